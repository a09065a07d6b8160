"""The images bucket, the tables (keys, indexes, TTL) and the backup key."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match
from aws_cdk.assertions import Template as CdkTemplate

from tests.infra.support import Template, props, resources, single

pytestmark = pytest.mark.slow

TABLE = "AWS::DynamoDB::Table"
# table -> (key schema, {index: key schema}, ttl attribute)
TABLES = {
    "Images": (
        [("pk", "HASH")],
        {
            "by-owner": [("owner", "HASH"), ("created_at", "RANGE")],
            "by-deleted": [("deleted_pk", "HASH"), ("deleted_at", "RANGE")],
            "by-backup-state": [("backup_state", "HASH"), ("backup_state_at", "RANGE")],
            # The HTTP API's album listing; CloudFormation adds one GSI per table update.
            "by-album": [("album_key", "HASH"), ("created_at", "RANGE")],
        },
        None,
    ),
    "Domains": (
        [("hostname", "HASH")],
        {"by-owner": [("owner", "HASH"), ("created_at", "RANGE")]},
        None,
    ),
    "Stats": ([("pk", "HASH"), ("sk", "RANGE")], {}, "expires_at"),
    "Destinations": (
        [("owner", "HASH")],
        {"all-destinations": [("kind", "HASH"), ("owner", "RANGE")]},
        None,
    ),
    "Idempotency": ([("id", "HASH")], {}, "expiration"),
    "ApiKeys": (
        [("key_id", "HASH")],
        {"by-owner": [("owner", "HASH"), ("created_at", "RANGE")]},
        None,
    ),
}


def _schema(entries: list[dict]) -> list[tuple[str, str]]:
    return [(e["AttributeName"], e["KeyType"]) for e in entries]


def test_images_bucket_locked_down(template: Template) -> None:
    bucket = single(template, "AWS::S3::Bucket", "StorageImagesBucket")
    p = props(template, bucket)
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    aborts = [
        r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        for r in p["LifecycleConfiguration"]["Rules"]
        if "AbortIncompleteMultipartUpload" in r
    ]
    assert aborts and all(1 <= days <= 7 for days in aborts)
    logs = single(template, "AWS::S3::Bucket", "StorageAccessLogs")
    assert p["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs}


def test_bucket_policies_deny_plain_http(template: Template) -> None:
    cdk = CdkTemplate.from_json(template)
    for prefix in ("StorageImagesBucket", "StorageAccessLogs"):
        bucket = single(template, "AWS::S3::Bucket", prefix)
        cdk.has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": bucket},
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Action": "s3:*",
                                    "Principal": {"AWS": "*"},
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_exactly_the_documented_tables(template: Template) -> None:
    assert len(resources(template, TABLE)) == len(TABLES) == 6


@pytest.mark.parametrize("name", list(TABLES))
def test_table_definition(template: Template, name: str) -> None:
    key_schema, indexes, ttl = TABLES[name]
    p = props(template, single(template, TABLE, f"Storage{name}Table"))
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert _schema(p["KeySchema"]) == key_schema
    got = {
        gsi["IndexName"]: _schema(gsi["KeySchema"]) for gsi in p.get("GlobalSecondaryIndexes", [])
    }
    assert got == indexes
    for gsi in p.get("GlobalSecondaryIndexes", []):
        assert gsi["Projection"] == {"ProjectionType": "ALL"}
    if ttl:
        assert p["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in p
    types = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    assert set(types.values()) == {"S"}


def test_stateful_resources_are_retained(template: Template) -> None:
    for kind in (TABLE, "AWS::S3::Bucket", "AWS::KMS::Key"):
        for lid, res in resources(template, kind).items():
            if lid.startswith("Storage"):
                assert res.get("DeletionPolicy") == "Retain", lid


def test_backup_key_rotates(template: Template) -> None:
    key = props(template, single(template, "AWS::KMS::Key", "StorageBackupKey"))
    assert key["EnableKeyRotation"] is True
