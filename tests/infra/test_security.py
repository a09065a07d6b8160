"""Security, across the whole synthesized template (tests/infra/test_iam.py checks each
function's actions; this file checks every policy of every kind against one explicit
allow-list, and what each role can reach against docs/internals.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.support import (
    Template,
    as_list,
    function_by_handler,
    refs,
    resources,
    role_of,
    role_statements,
)

pytestmark = pytest.mark.slow

# Actions AWS offers no resource-level permission for: the only ones allowed on "*".
RESOURCE_STAR_ALLOWED = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "rekognition:DetectLabels",
    "cloudwatch:PutMetricData",
}
SERVICE_WIDE = ("*", "s3:*", "dynamodb:*", "sqs:*", "kms:*", "iam:*", "lambda:*", "logs:*")

# What each function may reach (docs/internals.md, "Functions"): logical id prefixes.
REACH = {
    "lambdas.variant.handler.handler": {
        "queues": {"VariantQueue", "VariantDlq"},
        "tables": {"StorageImagesTable", "StorageIdempotencyTable"},
        "key": False,
    },
    "lambdas.backup.handler.handler": {
        "queues": {"BackupQueue", "BackupDlq"},
        "tables": {"StorageImagesTable", "StorageDestinationsTable", "StorageIdempotencyTable"},
        "key": True,
    },
    "lambdas.domain.handler.handler": {
        "queues": {"DomainQueue", "DomainDlq"},
        "tables": {"StorageDomainsTable", "StorageIdempotencyTable"},
        "key": False,
    },
    "lambdas.cron.handler.handler": {
        # SchedulesCronFailures: its on-failure destination (CDK's destination grant).
        "queues": {
            "SchedulesCronQueue",
            "SchedulesCronDlq",
            "SchedulesCronFailures",
            "BackupQueue",
        },
        "tables": {
            "StorageImagesTable",
            "StorageStatsTable",
            "StorageDestinationsTable",
            "StorageIdempotencyTable",
        },
        "key": True,
    },
    "lambdas.ingest.handler.handler": {
        # Its own queue and DLQ; sends variant and backup jobs.
        "queues": {"IngestQueue", "IngestDlq", "VariantQueue", "BackupQueue"},
        "tables": {"StorageImagesTable", "StorageDestinationsTable", "StorageIdempotencyTable"},
        "key": False,
    },
    "lambdas.api.handler.handler": {
        "queues": set(),
        "tables": {"StorageImagesTable", "StorageApiKeysTable"},
        "key": False,
    },
}


def all_identity_statements(template: Template) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for lid, res in template["Resources"].items():
        p = res.get("Properties", {})
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found += [(lid, s) for s in p["PolicyDocument"]["Statement"]]
        elif res["Type"] == "AWS::IAM::Role":
            for policy in p.get("Policies", []):
                found += [(lid, s) for s in policy["PolicyDocument"]["Statement"]]
    return found


def test_no_identity_policy_has_wildcard_actions_or_resources(template: Template) -> None:
    statements = all_identity_statements(template)
    assert statements
    for lid, st in statements:
        assert st["Effect"] == "Allow", lid
        for action in as_list(st["Action"]):
            assert action not in SERVICE_WIDE, (lid, action)
        if "*" in as_list(st.get("Resource")):
            assert set(as_list(st["Action"])) <= RESOURCE_STAR_ALLOWED, (lid, st)
    # and no role carries an AWS managed admin-ish policy beyond basic execution
    for lid, role in resources(template, "AWS::IAM::Role").items():
        for arn in as_list(role["Properties"].get("ManagedPolicyArns", [])):
            assert "AWSLambdaBasicExecutionRole" in str(arn), (lid, arn)


def test_resource_policies_only_deny_or_name_their_principal(template: Template) -> None:
    """Queue, topic, bucket and key policies: Deny statements, or an Allow to a named
    principal; the one "kms:*" is the key policy's delegation to the account's IAM (AWS
    requires it); CloudWatch may use the alarm topic's key to publish alarms."""
    for kind, field in (
        ("AWS::SQS::QueuePolicy", "PolicyDocument"),
        ("AWS::SNS::TopicPolicy", "PolicyDocument"),
        ("AWS::S3::BucketPolicy", "PolicyDocument"),
        ("AWS::KMS::Key", "KeyPolicy"),
    ):
        for lid, res in resources(template, kind).items():
            for st in res["Properties"][field]["Statement"]:
                if st["Effect"] == "Deny":
                    continue
                principal = st.get("Principal")
                assert principal not in ("*", {"AWS": "*"}), (lid, st)
                if kind == "AWS::KMS::Key" and principal == {"Service": "cloudwatch.amazonaws.com"}:
                    assert lid.startswith("MonitoringAlarmTopicKey"), lid
                    assert set(as_list(st["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
                elif kind == "AWS::KMS::Key":
                    assert as_list(st["Action"]) == ["kms:*"]
                    assert ":root" in str(principal), (lid, st)
                else:
                    assert "*" not in as_list(st["Action"]), (lid, st)


def _reached(statements: list[dict[str, Any]], service: str) -> set[str]:
    found: set[str] = set()
    for st in statements:
        if any(str(a).startswith(f"{service}:") for a in as_list(st["Action"])):
            found |= refs(st.get("Resource"))
    return found


def _strip_hash(logical_ids: set[str], prefixes: set[str]) -> set[str]:
    out = set()
    for lid in logical_ids:
        match = [p for p in prefixes if lid.startswith(p) and lid[len(p) :].isalnum()]
        out.add(max(match, key=len) if match else lid)
    return out


@pytest.mark.parametrize("handler", list(REACH))
def test_each_role_reaches_only_its_queues_tables_bucket_and_key(
    template: Template, handler: str
) -> None:
    statements = role_statements(
        template, role_of(template, function_by_handler(template, handler))
    )
    expected = REACH[handler]
    queue_ids = set(resources(template, "AWS::SQS::Queue"))
    table_ids = set(resources(template, "AWS::DynamoDB::Table"))
    buckets = {
        lid for lid in resources(template, "AWS::S3::Bucket") if lid.startswith("StorageImages")
    }
    all_prefixes = set().union(*(r["queues"] for r in REACH.values()))  # type: ignore[arg-type]
    reached_queues = _strip_hash(_reached(statements, "sqs") & queue_ids, all_prefixes)
    assert reached_queues == expected["queues"]
    table_prefixes = set().union(*(r["tables"] for r in REACH.values()))  # type: ignore[arg-type]
    reached_tables = _strip_hash(_reached(statements, "dynamodb") & table_ids, table_prefixes)
    assert reached_tables == expected["tables"]
    assert _reached(statements, "s3") <= buckets
    key_reached = bool(_reached(statements, "kms") & set(resources(template, "AWS::KMS::Key")))
    assert key_reached == expected["key"]


def test_encryption_and_tls_everywhere(template: Template) -> None:
    for lid, queue in resources(template, "AWS::SQS::Queue").items():
        p = queue["Properties"]
        assert p.get("SqsManagedSseEnabled") or p.get("KmsMasterKeyId"), lid
    secured = {
        ref
        for pol in resources(template, "AWS::SQS::QueuePolicy").values()
        for st in pol["Properties"]["PolicyDocument"]["Statement"]
        if st["Effect"] == "Deny" and "aws:SecureTransport" in str(st.get("Condition"))
        for ref in refs(pol["Properties"]["Queues"])
    }
    assert secured == set(resources(template, "AWS::SQS::Queue"))
    for lid, bucket in resources(template, "AWS::S3::Bucket").items():
        p = bucket["Properties"]
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"], lid
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, lid
    tls_buckets = {
        ref
        for pol in resources(template, "AWS::S3::BucketPolicy").values()
        for st in pol["Properties"]["PolicyDocument"]["Statement"]
        if st["Effect"] == "Deny" and "aws:SecureTransport" in str(st.get("Condition"))
        for ref in refs(pol["Properties"]["Bucket"])
    }
    assert tls_buckets == set(resources(template, "AWS::S3::Bucket"))
    for lid, table in resources(template, "AWS::DynamoDB::Table").items():
        p = table["Properties"]
        assert p["SSESpecification"]["SSEEnabled"] is True, lid
        assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, lid
    for lid, key in resources(template, "AWS::KMS::Key").items():
        assert key["Properties"]["EnableKeyRotation"] is True, lid


def test_only_the_api_role_reaches_the_api_keys_table(template: Template) -> None:
    """docs/internals.md, api_keys: the API function authenticates keys; nothing else reads."""
    api_role = role_of(template, function_by_handler(template, "lambdas.api.handler.handler"))
    reaching = set()
    for res in resources(template, "AWS::IAM::Policy").values():
        statements = res["Properties"]["PolicyDocument"]["Statement"]
        if any(t.startswith("StorageApiKeysTable") for t in _reached(statements, "dynamodb")):
            reaching |= refs(res["Properties"]["Roles"])
    assert reaching == {api_role}
