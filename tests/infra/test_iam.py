"""Least privilege, read from each function's role policy in the template."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.shared.keys import VARIANT_NAMES
from tests.infra.support import (
    Template,
    actions,
    as_list,
    function_by_handler,
    props,
    refs,
    resources,
    role_of,
    role_statements,
    single,
    statements_on,
)

pytestmark = pytest.mark.slow

HANDLERS = {
    "variant": "lambdas.variant.handler.handler",
    "backup": "lambdas.backup.handler.handler",
    "domain": "lambdas.domain.handler.handler",
    "cron": "lambdas.cron.handler.handler",
    "ingest": "lambdas.ingest.handler.handler",
    "api": "lambdas.api.handler.handler",
}
TABLE = "AWS::DynamoDB::Table"
DDB_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
}
X_RAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def _statements(template: Template, name: str) -> list[dict]:
    return role_statements(
        template, role_of(template, function_by_handler(template, HANDLERS[name]))
    )


def _ids(template: Template) -> dict[str, str]:
    return {
        "bucket": single(template, "AWS::S3::Bucket", "StorageImagesBucket"),
        "images": single(template, TABLE, "StorageImagesTable"),
        "domains": single(template, TABLE, "StorageDomainsTable"),
        "stats": single(template, TABLE, "StorageStatsTable"),
        "destinations": single(template, TABLE, "StorageDestinationsTable"),
        "idempotency": single(template, TABLE, "StorageIdempotencyTable"),
        "api_keys": single(template, TABLE, "StorageApiKeysTable"),
        "key": single(template, "AWS::KMS::Key", "StorageBackupKey"),
    }


def _actions_on(statements: list[dict], logical_id: str) -> set[str]:
    return actions(list(statements_on(statements, logical_id)))


@pytest.mark.parametrize("name", list(HANDLERS))
def test_no_admin_wildcards(template: Template, name: str) -> None:
    for st in _statements(template, name):
        assert st["Effect"] == "Allow"
        for action in as_list(st["Action"]):
            assert action != "*" and not action.endswith(":*"), (name, action)
        if "*" in as_list(st["Resource"]):
            # Only services without resource-level permissions.
            assert set(as_list(st["Action"])) <= X_RAY | {"rekognition:DetectLabels"}, st


def test_variant_boundaries(template: Template) -> None:
    ids = _ids(template)
    st = _statements(template, "variant")
    touched = refs([s["Resource"] for s in st])
    assert ids["destinations"] not in touched
    assert ids["key"] not in touched
    assert ids["domains"] not in touched
    assert ids["stats"] not in touched
    assert not any(a.startswith("kms:") for a in actions(st))
    assert not any(a.startswith("secretsmanager:") for a in actions(st))
    on_bucket = _actions_on(st, ids["bucket"])
    assert "s3:PutObject" in on_bucket
    assert "s3:GetObject*" in on_bucket
    assert not any(a.startswith("s3:DeleteObject") for a in on_bucket)
    assert DDB_WRITES & _actions_on(st, ids["images"])
    assert DDB_WRITES & _actions_on(st, ids["idempotency"])
    assert "rekognition:DetectLabels" not in actions(st)  # AI off by default


def test_variant_rekognition_when_ai_enabled(custom: Template) -> None:
    st = _statements(custom, "variant")
    (detect,) = [s for s in st if "rekognition:DetectLabels" in as_list(s["Action"])]
    # Merged with X-Ray's statement (both unscoped by nature), nothing else.
    assert set(as_list(detect["Action"])) <= {"rekognition:DetectLabels", *X_RAY}
    assert detect["Resource"] == "*"


def test_backup_boundaries(template: Template) -> None:
    ids = _ids(template)
    st = _statements(template, "backup")
    every = actions(st)
    assert "s3:PutObject" not in every
    assert not any(a.startswith(("s3:DeleteObject", "s3:Abort", "s3:PutObject")) for a in every)
    on_bucket = _actions_on(st, ids["bucket"])
    assert "s3:GetObject*" in on_bucket
    destinations = _actions_on(st, ids["destinations"])
    assert "dynamodb:GetItem" in destinations and "dynamodb:Query" in destinations
    assert not destinations & DDB_WRITES
    assert DDB_WRITES & _actions_on(st, ids["images"])
    on_key = _actions_on(st, ids["key"])
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= on_key
    touched = refs([s["Resource"] for s in st])
    assert ids["domains"] not in touched and ids["stats"] not in touched


def test_domain_boundaries(template: Template) -> None:
    ids = _ids(template)
    st = _statements(template, "domain")
    every = actions(st)
    assert not any(a.startswith("s3:") for a in every)
    assert not any(a.startswith("kms:") for a in every)
    touched = refs([s["Resource"] for s in st])
    for other in ("bucket", "images", "stats", "destinations", "key"):
        assert ids[other] not in touched, other
    assert DDB_WRITES & _actions_on(st, ids["domains"])
    own_queue = single(template, "AWS::SQS::Queue", "DomainQueue")
    assert "sqs:SendMessage" in _actions_on(st, own_queue)
    assert not any(a.startswith("secretsmanager:") for a in every)  # dns-only by default


def test_domain_reads_cloudflare_secret_when_configured(custom: Template) -> None:
    st = _statements(custom, "domain")
    secret = single(custom, "AWS::SecretsManager::Secret", "CloudflareToken")
    assert "secretsmanager:GetSecretValue" in _actions_on(st, secret)
    variant = _statements(custom, "variant")
    assert secret not in refs([s["Resource"] for s in variant])


def test_cron_boundaries(template: Template) -> None:
    ids = _ids(template)
    st = _statements(template, "cron")
    on_bucket = _actions_on(st, ids["bucket"])
    assert "s3:DeleteObject*" in on_bucket
    assert "s3:GetObject*" in on_bucket
    assert "s3:PutObject" not in actions(st)
    assert DDB_WRITES & _actions_on(st, ids["stats"])
    assert not _actions_on(st, ids["destinations"]) & DDB_WRITES
    on_key = _actions_on(st, ids["key"])
    assert on_key == {"kms:Decrypt"}
    backup_queue = single(template, "AWS::SQS::Queue", "BackupQueue")
    cron_queue = single(template, "AWS::SQS::Queue", "SchedulesCronQueue")
    assert "sqs:SendMessage" in _actions_on(st, backup_queue)
    assert "sqs:SendMessage" in _actions_on(st, cron_queue)
    assert ids["domains"] not in refs([s["Resource"] for s in st])
    # Backup sync: the images table's indexes (by-backup-state, and by-owner for the
    # backfill of an interrupted `backup set`), marking images pending.
    on_images = list(statements_on(st, ids["images"]))
    assert any(
        "dynamodb:Query" in actions([s]) and "/index/*" in json.dumps(s["Resource"])
        for s in on_images
    )
    assert "dynamodb:UpdateItem" in actions(on_images)
    # Continuations run under job idempotency like the queue workers.
    assert DDB_WRITES & _actions_on(st, ids["idempotency"])
    cron_fn = function_by_handler(template, HANDLERS["cron"])
    env = props(template, cron_fn)["Environment"]["Variables"]
    assert env["IDEMPOTENCY_TABLE"] == {"Ref": ids["idempotency"]}


@pytest.mark.parametrize("name", ["variant", "backup", "domain", "cron", "ingest"])
def test_worker_can_send_to_dlq_and_change_visibility(template: Template, name: str) -> None:
    prefix = {
        "variant": "Variant",
        "backup": "Backup",
        "domain": "Domain",
        "cron": "SchedulesCron",
        "ingest": "Ingest",
    }
    st = _statements(template, name)
    dlq = single(template, "AWS::SQS::Queue", f"{prefix[name]}Dlq")
    queue = single(template, "AWS::SQS::Queue", f"{prefix[name]}Queue")
    assert "sqs:SendMessage" in _actions_on(st, dlq)
    assert "sqs:ChangeMessageVisibility" in _actions_on(st, queue)
    assert "sqs:ReceiveMessage" not in _actions_on(st, dlq)


def test_queues_off_cron_has_no_backup_queue(queues_off: Template) -> None:
    st = _statements(queues_off, "cron")
    queues = {
        lid for lid, res in queues_off["Resources"].items() if res["Type"] == "AWS::SQS::Queue"
    }
    sent_to = {
        lid
        for s in st
        if "sqs:SendMessage" in as_list(s["Action"])
        for lid in refs(s["Resource"]) & queues
    }
    assert sent_to
    assert all(lid.startswith("SchedulesCron") for lid in sent_to)


def _object_patterns(statements: list[dict], bucket: str, action: str) -> set[str]:
    """What ``action`` may reach in the bucket: "" for the bucket's own ARN, else the
    key pattern after it ("/*/original"); statements granting it on anything else fail."""
    found: set[str] = set()
    for st in statements:
        if action not in as_list(st["Action"]):
            continue
        for resource in as_list(st["Resource"]):
            if resource == {"Fn::GetAtt": [bucket, "Arn"]}:
                found.add("")
                continue
            parts = resource["Fn::Join"][1]
            assert parts[0] == {"Fn::GetAtt": [bucket, "Arn"]}, (action, resource)
            found.add("".join(parts[1:]))
    return found


def _sent_to(template: Template, statements: list[dict[str, Any]]) -> set[str]:
    queues = set(resources(template, "AWS::SQS::Queue"))
    return {
        lid
        for st in statements
        if "sqs:SendMessage" in as_list(st["Action"])
        for lid in refs(st["Resource"]) & queues
    }


def test_api_boundaries(template: Template) -> None:
    ids = _ids(template)
    st = _statements(template, "api")
    bucket = ids["bucket"]
    # Presigned POSTs (signed by this role) can only ever write an original...
    assert _object_patterns(st, bucket, "s3:PutObject") == {"/*/original"}
    # ...presigned GETs only ever read a variant, never an original.
    assert _object_patterns(st, bucket, "s3:GetObject*") == {""} | {
        f"/*/{name}" for name in VARIANT_NAMES
    }
    every = actions(st)
    assert not any(a.startswith("s3:DeleteObject") for a in every)
    assert not any(a.startswith(("sqs:", "kms:", "secretsmanager:", "rekognition:")) for a in every)
    assert DDB_WRITES & _actions_on(st, ids["images"])  # reservations
    on_keys = _actions_on(st, ids["api_keys"])
    assert "dynamodb:GetItem" in on_keys and "dynamodb:Query" in on_keys
    assert not on_keys & DDB_WRITES
    touched = refs([s["Resource"] for s in st])
    for other in ("domains", "stats", "destinations", "idempotency", "key"):
        assert ids[other] not in touched, other
    assert _sent_to(template, st) == set()


def test_ingest_boundaries(template: Template) -> None:
    ids = _ids(template)
    st = _statements(template, "ingest")
    bucket = ids["bucket"]
    assert _object_patterns(st, bucket, "s3:GetObject*") == {"", "/*/original"}
    assert _object_patterns(st, bucket, "s3:DeleteObject*") == {"/*/original"}
    every = actions(st)
    assert not any(a.startswith(("s3:PutObject", "s3:Abort")) for a in every)
    assert not any(a.startswith(("kms:", "secretsmanager:", "rekognition:")) for a in every)
    # The variant and backup queues, and its own DLQ (invalid messages), nothing else.
    variant = single(template, "AWS::SQS::Queue", "VariantQueue")
    backup = single(template, "AWS::SQS::Queue", "BackupQueue")
    own_dlq = single(template, "AWS::SQS::Queue", "IngestDlq")
    assert _sent_to(template, st) == {variant, backup, own_dlq}
    assert DDB_WRITES & _actions_on(st, ids["images"])
    assert DDB_WRITES & _actions_on(st, ids["idempotency"])
    destinations = _actions_on(st, ids["destinations"])
    assert "dynamodb:GetItem" in destinations and not destinations & DDB_WRITES
    touched = refs([s["Resource"] for s in st])
    for other in ("domains", "stats", "api_keys", "key"):
        assert ids[other] not in touched, other


def test_only_the_api_reaches_the_api_keys_table(template: Template) -> None:
    table = _ids(template)["api_keys"]
    api_role = role_of(template, function_by_handler(template, HANDLERS["api"]))
    reaching = {
        role
        for role in resources(template, "AWS::IAM::Role")
        if table in refs([st.get("Resource") for st in role_statements(template, role)])
    }
    assert reaching == {api_role}


def test_queues_off_has_no_api_and_no_ingest(queues_off: Template) -> None:
    handlers = {
        res["Properties"].get("Handler")
        for res in resources(queues_off, "AWS::Lambda::Function").values()
    }
    assert handlers == {HANDLERS["cron"]}
    for kind in ("AWS::ApiGatewayV2::Api", "Custom::S3BucketNotifications"):
        assert not resources(queues_off, kind), kind
