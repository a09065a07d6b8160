"""Outputs, alarms, cfn-lint and cdk-nag over every synthesized context."""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint

from infra.synth import SynthResult
from tests.infra.support import Template, pixflare_functions, props, resources

pytestmark = pytest.mark.slow

QUEUE_OUTPUTS = {
    "VariantQueueUrl",
    "VariantDlqUrl",
    "BackupQueueUrl",
    "BackupDlqUrl",
    "DomainQueueUrl",
    "DomainDlqUrl",
    "IngestQueueUrl",
    "IngestDlqUrl",
    "ApiUrl",
}
ALWAYS_OUTPUTS = {
    "ImagesBucketName",
    "ImagesTableName",
    "DomainsTableName",
    "StatsTableName",
    "DestinationsTableName",
    "IdempotencyTableName",
    "ApiKeysTableName",
    "BackupKeyId",
    "CronQueueUrl",
    "CronFunctionName",
    "RuntimeSettings",
    "AlarmTopicArn",
}
# cfn-lint warnings we accept, each for a named reason.
ACCEPTED_WARNINGS = {
    # The CDK makes each Lambda function DependsOn its role (and the role's default
    # policy) so the policy exists before the first invocation; the GetAtt on the role
    # already orders the role, which is all W3005 points out. Harmless and generated.
    "W3005",
}
# cdk-nag rules we acknowledge (each acknowledgment carries its own reason, see infra/nag.py).
# APIG4: the routes have no API Gateway authorizer (the function checks API keys).
ACKNOWLEDGEABLE = {"IAM4", "IAM5", "L1", "SQS3", "SMG4", "APIG4"}
SYNTHS = ["default_synth", "queues_off_synth", "custom_synth", "domains_off_synth"]


def test_outputs(template: Template, queues_off: Template, domains_off: Template) -> None:
    assert set(template["Outputs"]) == ALWAYS_OUTPUTS | QUEUE_OUTPUTS
    assert set(queues_off["Outputs"]) == ALWAYS_OUTPUTS
    # No DomainQueueUrl: `pixflare domain ...` says custom domains are not deployed.
    assert set(domains_off["Outputs"]) == ALWAYS_OUTPUTS | (
        QUEUE_OUTPUTS - {"DomainQueueUrl", "DomainDlqUrl"}
    )


def test_output_values_point_at_the_right_resources(template: Template) -> None:
    outputs = {name: out["Value"] for name, out in template["Outputs"].items()}
    assert outputs["ImagesBucketName"]["Ref"].startswith("StorageImagesBucket")
    assert outputs["BackupKeyId"]["Ref"].startswith("StorageBackupKey")
    assert outputs["VariantDlqUrl"]["Ref"].startswith("VariantDlq")
    assert outputs["CronQueueUrl"]["Ref"].startswith("SchedulesCronQueue")
    assert outputs["CronFunctionName"]["Ref"].startswith("SchedulesCronFunction")
    for stem in ("Images", "Domains", "Stats", "Destinations", "Idempotency", "ApiKeys"):
        assert outputs[f"{stem}TableName"]["Ref"].startswith(f"Storage{stem}Table")


def test_runtime_settings_output_carries_the_context_but_no_secret(
    template: Template, custom: Template
) -> None:
    import json

    deployed = json.loads(template["Outputs"]["RuntimeSettings"]["Value"])
    assert deployed["DOMAIN_MAX_CHECKS"] == "40"
    assert deployed["ENABLE_QUEUES"] == "true"
    custom_settings = json.loads(custom["Outputs"]["RuntimeSettings"]["Value"])
    assert custom_settings["CUSTOM_DOMAIN_PROVIDER"] == "cloudflare"
    assert not any("TOKEN" in name or "SECRET" in name for name in custom_settings)


def _alarms(template: Template) -> list[dict]:
    return [res["Properties"] for res in resources(template, "AWS::CloudWatch::Alarm").values()]


def test_every_dlq_has_a_depth_alarm(template: Template) -> None:
    dlqs = {lid for lid, res in resources(template, "AWS::SQS::Queue").items() if "Dlq" in lid}
    failures = {lid for lid in resources(template, "AWS::SQS::Queue") if "CronFailures" in lid}
    assert len(dlqs) == 6  # 4 workers + cron continuation + EventBridge targets
    assert len(failures) == 1  # the cron function's on-failure destination
    dlqs |= failures
    alarmed = set()
    for alarm in _alarms(template):
        if alarm["MetricName"] == "ApproximateNumberOfMessagesVisible":
            assert alarm["Threshold"] == 0
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
            (dim,) = alarm["Dimensions"]
            alarmed.add(dim["Value"]["Fn::GetAtt"][0])
    assert alarmed == dlqs


def test_every_source_queue_has_an_age_alarm(template: Template) -> None:
    sources = {
        lid
        for lid, res in resources(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" in res["Properties"]
    }
    assert len(sources) == 5
    alarmed = set()
    for alarm in _alarms(template):
        if alarm["MetricName"] == "ApproximateAgeOfOldestMessage":
            assert alarm["Threshold"] > 0
            (dim,) = alarm["Dimensions"]
            alarmed.add(dim["Value"]["Fn::GetAtt"][0])
    assert alarmed == sources


def test_function_error_alarms(template: Template) -> None:
    functions = set(pixflare_functions(template))
    alarmed = {
        alarm["Dimensions"][0]["Value"]["Ref"]
        for alarm in _alarms(template)
        if alarm["MetricName"] == "Errors"
    }
    assert alarmed == functions


def test_alarm_topic_always_and_every_alarm_acts_on_it(
    template: Template, custom: Template
) -> None:
    """tests/infra/test_monitoring.py has the details; here the headline."""
    for synthesized in (template, custom):
        (topic_id,) = resources(synthesized, "AWS::SNS::Topic")
        assert "KmsMasterKeyId" in props(synthesized, topic_id)
        assert all(a["AlarmActions"] == [{"Ref": topic_id}] for a in _alarms(synthesized))
    assert not resources(template, "AWS::SNS::Subscription")
    (sub,) = resources(custom, "AWS::SNS::Subscription").values()
    assert sub["Properties"]["Protocol"] == "email"


@pytest.mark.parametrize("synth", SYNTHS)
def test_cfn_lint_clean(synth: str, request: pytest.FixtureRequest) -> None:
    result: SynthResult = request.getfixturevalue(synth)
    matches = lint(json.dumps(result.template), config=ManualArgs(regions=["us-east-1"]))
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert errors == []
    warnings = [
        str(m) for m in matches if m.rule.id.startswith("W") and m.rule.id not in ACCEPTED_WARNINGS
    ]
    assert warnings == []


@pytest.mark.parametrize("synth", SYNTHS)
def test_cdk_nag_has_no_unacknowledged_finding(synth: str, request: pytest.FixtureRequest) -> None:
    result: SynthResult = request.getfixturevalue(synth)
    assert [str(f) for f in result.findings] == []


@pytest.mark.parametrize("synth", SYNTHS)
def test_every_acknowledgment_is_specific(synth: str, request: pytest.FixtureRequest) -> None:
    result: SynthResult = request.getfixturevalue(synth)
    assert result.acknowledged, "expected the documented acknowledgments"
    for finding in result.acknowledged:
        rule = finding.rule.removeprefix("AwsSolutions-").split("[", 1)[0]
        assert rule in ACKNOWLEDGEABLE, finding.rule
        assert len(finding.reason) >= 40, finding
        if rule == "IAM5":
            assert "[" in finding.rule  # one wildcard at a time, never the whole rule
