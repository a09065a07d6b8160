"""The operator hears when something goes wrong: the alarm topic, every alarm's actions,
the cron function's on-failure destination, and the dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import config
from tests.infra.support import (
    Template,
    actions,
    as_list,
    function_by_handler,
    pixflare_functions,
    props,
    queue_by_name,
    refs,
    resources,
    role_of,
    role_statements,
    single,
    statements_on,
)

pytestmark = pytest.mark.slow

CRON_HANDLER = "lambdas.cron.handler.handler"
DOMAIN_HANDLER = "lambdas.domain.handler.handler"
STACK = config.STACK_NAME
TEMPLATES = ["template", "queues_off", "custom"]


def _alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {
        lid: res["Properties"] for lid, res in resources(template, "AWS::CloudWatch::Alarm").items()
    }


def _topic(template: Template) -> str:
    (topic,) = resources(template, "AWS::SNS::Topic")
    return topic


def _failure_queue(template: Template) -> str:
    return queue_by_name(template, f"{STACK}-{config.CRON_FAILURE_QUEUE_SUFFIX}")


def _queue_functions(template: Template) -> int:
    return len(resources(template, "AWS::Lambda::EventSourceMapping"))


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_alarm_notifies_the_topic_on_alarm_and_on_ok(
    name: str, request: pytest.FixtureRequest
) -> None:
    template: Template = request.getfixturevalue(name)
    topic = _topic(template)
    alarms = _alarms(template)
    assert alarms
    for lid, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": topic}], lid
        assert alarm["OKActions"] == [{"Ref": topic}], lid
        assert alarm["TreatMissingData"] == "notBreaching", lid


@pytest.mark.parametrize("name", TEMPLATES)
def test_alarm_count(name: str, request: pytest.FixtureRequest) -> None:
    """3 per queue function (DLQ depth, oldest message, errors), the EventBridge DLQ,
    the cron on-failure queue, ProviderNotConfigured with Cloudflare, and with queues
    the API function's errors, the HTTP API's 5xx and the two backup-destination
    refusal alarms (backup function, daily sync)."""
    template: Template = request.getfixturevalue(name)
    workers = _queue_functions(template)
    cloudflare = 1 if name == "custom" else 0
    api = 0 if name == "queues_off" else 2
    refusals = 0 if name == "queues_off" else 2
    assert len(_alarms(template)) == 3 * workers + 2 + cloudflare + api + refusals
    # 5 queue functions / only cron
    expected = {"template": 21, "queues_off": 5, "custom": 22}
    if name in expected:
        assert len(_alarms(template)) == expected[name]


def test_topic_exists_without_alarm_email_encrypted_tls_only(template: Template) -> None:
    topic = _topic(template)
    p = props(template, topic)
    assert p["TopicName"] == f"{STACK}-{config.ALARM_TOPIC_SUFFIX}"
    key = p["KmsMasterKeyId"]["Fn::GetAtt"][0]
    assert template["Resources"][key]["Type"] == "AWS::KMS::Key"
    assert props(template, key)["EnableKeyRotation"] is True
    cloudwatch_on_key = [
        st
        for st in props(template, key)["KeyPolicy"]["Statement"]
        if st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert [set(as_list(st["Action"])) for st in cloudwatch_on_key] == [
        {"kms:Decrypt", "kms:GenerateDataKey*"}
    ]
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for st in statements
    )
    (allow,) = [st for st in statements if st["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in json.dumps(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert not resources(template, "AWS::SNS::Subscription")


def test_alarm_email_only_adds_an_email_subscription(template: Template, custom: Template) -> None:
    topic = _topic(custom)
    (sub,) = resources(custom, "AWS::SNS::Subscription").values()
    assert sub["Properties"]["Protocol"] == "email"
    assert sub["Properties"]["Endpoint"] == "ops@example.com"
    assert sub["Properties"]["TopicArn"] == {"Ref": topic}
    assert props(custom, topic) == props(template, _topic(template))


@pytest.mark.parametrize("name", TEMPLATES)
def test_alarm_topic_arn_output(name: str, request: pytest.FixtureRequest) -> None:
    template: Template = request.getfixturevalue(name)
    value = template["Outputs"][config.OUTPUT_ALARM_TOPIC]["Value"]
    # Built from the topic's fixed name (the embedded stack creates no topic to Ref).
    separator, parts = value["Fn::Join"]
    assert separator == ""
    assert parts[0] == "arn:"
    assert parts[1:] == [
        {"Ref": "AWS::Partition"},
        ":sns:",
        {"Ref": "AWS::Region"},
        ":",
        {"Ref": "AWS::AccountId"},
        f":{props(template, _topic(template))['TopicName']}",
    ]


def test_a_named_stack_names_its_topic_and_failure_queue_after_itself(named: Template) -> None:
    name = "PixflareStaging"
    assert props(named, _topic(named))["TopicName"] == f"{name}-{config.ALARM_TOPIC_SUFFIX}"
    queue_by_name(named, f"{name}-{config.CRON_FAILURE_QUEUE_SUFFIX}")
    assert f":{name}-alarms" in json.dumps(named["Outputs"][config.OUTPUT_ALARM_TOPIC])


def test_cron_on_failure_destination(template: Template) -> None:
    fn = function_by_handler(template, CRON_HANDLER)
    queue = _failure_queue(template)
    (config_id,) = resources(template, "AWS::Lambda::EventInvokeConfig")
    invoke = props(template, config_id)
    assert invoke["FunctionName"] == {"Ref": fn}
    assert invoke["Qualifier"] == "$LATEST"
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert invoke["MaximumRetryAttempts"] == config.CRON_ASYNC_RETRY_ATTEMPTS == 2
    assert invoke["MaximumEventAgeInSeconds"] == config.CRON_ASYNC_MAX_EVENT_AGE_HOURS * 3600
    # The EventBridge target's own retries and DLQ (delivery failures) are kept.
    for rule in resources(template, "AWS::Events::Rule").values():
        (target,) = rule["Properties"]["Targets"]
        assert "DeadLetterConfig" in target


def test_cron_failure_queue_encrypted_tls_only_kept_14_days(template: Template) -> None:
    queue = _failure_queue(template)
    p = props(template, queue)
    assert p["SqsManagedSseEnabled"] is True
    assert p["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert "RedrivePolicy" not in p
    policies = [
        st
        for pol in resources(template, "AWS::SQS::QueuePolicy").values()
        if {"Ref": queue} in pol["Properties"]["Queues"]
        for st in pol["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert [st["Effect"] for st in policies] == ["Deny"]
    assert policies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Nothing consumes it: an operator reads it.
    assert all(
        res["Properties"]["EventSourceArn"] != {"Fn::GetAtt": [queue, "Arn"]}
        for res in resources(template, "AWS::Lambda::EventSourceMapping").values()
    )


def test_cron_role_may_only_send_to_the_failure_queue(template: Template) -> None:
    fn = function_by_handler(template, CRON_HANDLER)
    queue = _failure_queue(template)
    on_queue = list(statements_on(role_statements(template, role_of(template, fn)), queue))
    assert "sqs:SendMessage" in actions(on_queue)
    assert not {"sqs:ReceiveMessage", "sqs:DeleteMessage"} & actions(on_queue)
    # No other function reaches it.
    for other in resources(template, "AWS::Lambda::Function"):
        if other != fn:
            statements = role_statements(template, role_of(template, other))
            assert queue not in refs([st.get("Resource") for st in statements])


def test_alarm_on_the_cron_failure_queue(template: Template) -> None:
    queue = _failure_queue(template)
    found = [
        alarm
        for alarm in _alarms(template).values()
        if alarm["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    ]
    (alarm,) = found
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Maximum", 60, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def _provider_alarms(template: Template) -> list[dict[str, Any]]:
    return [
        alarm
        for alarm in _alarms(template).values()
        if alarm.get("MetricName") == config.PROVIDER_NOT_CONFIGURED_METRIC
    ]


def test_provider_not_configured_alarm_with_cloudflare(custom: Template) -> None:
    function_by_handler(custom, DOMAIN_HANDLER)  # the domain function is deployed
    (alarm,) = _provider_alarms(custom)
    # What Powertools emits from the domain function: namespace, service dimension only.
    assert alarm["Namespace"] == config.METRICS_NAMESPACE == "Pixflare"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "domain"}]
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_no_provider_alarm_without_cloudflare(template: Template, queues_off: Template) -> None:
    assert _provider_alarms(template) == []
    assert _provider_alarms(queues_off) == []


def _dashboard_body(template: Template) -> str:
    dashboard = single(template, "AWS::CloudWatch::Dashboard", "MonitoringDashboard")
    body = props(template, dashboard)["DashboardBody"]
    if isinstance(body, str):
        return body
    return "".join(p if isinstance(p, str) else json.dumps(p) for p in body["Fn::Join"][1])


def test_dashboard_covers_queues_functions_and_daily_jobs(template: Template) -> None:
    body = _dashboard_body(template)
    for lid in resources(template, "AWS::SQS::Queue"):
        assert lid in body, f"queue {lid} not on the dashboard"
    for fn in pixflare_functions(template):
        for metric in ("Errors", "Throttles", "Duration"):
            assert f'["AWS/Lambda","{metric}","FunctionName","{{"Ref": "{fn}"}}"' in body, (
                fn,
                metric,
            )
    for mapping in resources(template, "AWS::Lambda::EventSourceMapping").values():
        queue = mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        assert (
            f'["AWS/SQS","ApproximateAgeOfOldestMessage","QueueName","{{"Fn::GetAtt": ["{queue}"'
            in body
        )
    for job in ("cleanup", "analytics", "backup-sync"):
        for metric in (config.CRON_FINISHED_METRIC, config.CRON_STEPS_METRIC):
            assert f'["Pixflare","{metric}","job","{job}","service","cron"' in body
    for alarm in _alarms(template):
        assert alarm in body  # the alarm status widget lists every alarm


def test_api_alarms(template: Template) -> None:
    api_fn = function_by_handler(template, "lambdas.api.handler.handler")
    api = single(template, "AWS::ApiGatewayV2::Api", "HttpApi")
    alarms = list(_alarms(template).values())
    (errors,) = [
        a
        for a in alarms
        if a["MetricName"] == "Errors" and a["Dimensions"][0]["Value"] == {"Ref": api_fn}
    ]
    assert (errors["Threshold"], errors["Period"]) == (0, 300)
    (server,) = [a for a in alarms if a["MetricName"] == "5xx"]
    assert server["Namespace"] == "AWS/ApiGateway"
    assert server["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": api}}]
    assert (server["Statistic"], server["Period"], server["Threshold"]) == ("Sum", 300, 0)
    assert '"AWS/ApiGateway","Count","ApiId"' in _dashboard_body(template)


def test_refused_backup_destinations_alarm_from_both_emitters(template: Template) -> None:
    """BackupDestinationRefused from the backup function and from the daily sync (their
    EMF dimension sets differ), each alarming on the first refusal."""
    found = {
        tuple(sorted((d["Name"], d["Value"]) for d in alarm["Dimensions"])): alarm
        for alarm in _alarms(template).values()
        if alarm.get("MetricName") == "BackupDestinationRefused"
    }
    assert set(found) == {
        (("service", "backup"),),
        (("job", "backup-sync"), ("service", "cron")),
    }
    for alarm in found.values():
        assert alarm["Namespace"] == "Pixflare"
        assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["Statistic"]) == (0, 1, "Sum")
