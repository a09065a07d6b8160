"""The three EventBridge rules: expressions, input, retries, dead-letter queue."""

from __future__ import annotations

import json

import pytest

from tests.infra.support import CUSTOM, Template, function_by_handler, resources

pytestmark = pytest.mark.slow

CRON_HANDLER = "lambdas.cron.handler.handler"
EXPECTED = {
    "cleanup": "cron(0 1 * * ? *)",
    "analytics": "cron(0 2 * * ? *)",
    "backup-sync": "cron(0 3 * * ? *)",
}


def _rules(template: Template) -> dict[str, dict]:
    """job name -> rule properties."""
    found = {}
    for res in resources(template, "AWS::Events::Rule").values():
        (target,) = res["Properties"]["Targets"]
        found[json.loads(target["Input"])["job"]] = res["Properties"]
    return found


def test_three_rules_with_expected_expressions(template: Template) -> None:
    rules = _rules(template)
    assert {job: rule["ScheduleExpression"] for job, rule in rules.items()} == EXPECTED


def test_each_target_is_the_cron_function_with_retry_and_dlq(template: Template) -> None:
    fn = function_by_handler(template, CRON_HANDLER)
    dlqs = set()
    for job, rule in _rules(template).items():
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [fn, "Arn"]}, job
        assert json.loads(target["Input"]) == {"job": job}
        retry = target["RetryPolicy"]
        assert retry["MaximumRetryAttempts"] >= 1
        assert 60 <= retry["MaximumEventAgeInSeconds"] <= 86_400
        dlqs.add(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0])
        assert rule["State"] == "ENABLED"
    assert len(dlqs) == 1
    (dlq,) = dlqs
    assert template["Resources"][dlq]["Type"] == "AWS::SQS::Queue"
    assert dlq.startswith("SchedulesEventsDlq")


def test_events_may_invoke_the_cron_function(template: Template) -> None:
    fn = function_by_handler(template, CRON_HANDLER)
    principals = [
        res["Properties"]
        for res in resources(template, "AWS::Lambda::Permission").values()
        if res["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert len(principals) == 3
    assert all(p["FunctionName"] == {"Fn::GetAtt": [fn, "Arn"]} for p in principals)


def test_context_overrides_a_schedule(custom: Template) -> None:
    rules = _rules(custom)
    assert rules["cleanup"]["ScheduleExpression"] == CUSTOM["cleanupSchedule"]
    assert rules["analytics"]["ScheduleExpression"] == EXPECTED["analytics"]


def test_queues_off_drops_only_backup_sync(queues_off: Template) -> None:
    rules = _rules(queues_off)
    assert set(rules) == {"cleanup", "analytics"}
    assert {job: r["ScheduleExpression"] for job, r in rules.items()} == {
        "cleanup": EXPECTED["cleanup"],
        "analytics": EXPECTED["analytics"],
    }
