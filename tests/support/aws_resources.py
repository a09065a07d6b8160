"""Resources for handler tests under in-process moto: the tables, bucket and queues of
docs/internals.md, and the environment a function would see.

The local stack builds the same things from the synthesized template; these
unit-level fixtures stay independent of a CDK synth so they run in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"


def _gsi(name: str, pk: str, sk: str | None = None) -> dict[str, Any]:
    schema = [{"AttributeName": pk, "KeyType": "HASH"}]
    if sk:
        schema.append({"AttributeName": sk, "KeyType": "RANGE"})
    return {"IndexName": name, "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}


TABLES: dict[str, dict[str, Any]] = {
    "images": {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": n, "AttributeType": "S"}
            for n in (
                "pk",
                "owner",
                "created_at",
                "deleted_pk",
                "deleted_at",
                "backup_state",
                "backup_state_at",
                "album_key",
            )
        ],
        "GlobalSecondaryIndexes": [
            _gsi("by-owner", "owner", "created_at"),
            _gsi("by-deleted", "deleted_pk", "deleted_at"),
            _gsi("by-backup-state", "backup_state", "backup_state_at"),
            _gsi("by-album", "album_key", "created_at"),
        ],
    },
    "domains": {
        "KeySchema": [{"AttributeName": "hostname", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": n, "AttributeType": "S"} for n in ("hostname", "owner", "created_at")
        ],
        "GlobalSecondaryIndexes": [_gsi("by-owner", "owner", "created_at")],
    },
    "stats": {
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
    },
    "destinations": {
        "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": n, "AttributeType": "S"} for n in ("owner", "kind")
        ],
        "GlobalSecondaryIndexes": [_gsi("all-destinations", "kind", "owner")],
    },
    "api_keys": {
        "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": n, "AttributeType": "S"} for n in ("key_id", "owner", "created_at")
        ],
        "GlobalSecondaryIndexes": [_gsi("by-owner", "owner", "created_at")],
    },
    "idempotency": {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    },
}

QUEUES = {"variant": 180, "backup": 360, "domain": 180, "cron": 1800, "ingest": 180}
ORIGINAL_SUFFIX = "/original"


@dataclass
class Resources:
    bucket: str = "pixflare-images"
    tables: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    kms_key_id: str = ""

    def env(self, queue: str | None = None) -> dict[str, str]:
        env = {
            "IMAGES_BUCKET": self.bucket,
            "IMAGES_TABLE": self.tables["images"],
            "DOMAINS_TABLE": self.tables["domains"],
            "STATS_TABLE": self.tables["stats"],
            "DESTINATIONS_TABLE": self.tables["destinations"],
            "IDEMPOTENCY_TABLE": self.tables["idempotency"],
            "API_KEYS_TABLE": self.tables["api_keys"],
            "VARIANT_QUEUE_URL": self.queue_urls["variant"],
            "BACKUP_QUEUE_URL": self.queue_urls["backup"],
            "DOMAIN_QUEUE_URL": self.queue_urls["domain"],
            "CRON_QUEUE_URL": self.queue_urls["cron"],
            "BACKUP_KMS_KEY_ID": self.kms_key_id,
        }
        if queue:
            env["QUEUE_URL"] = self.queue_urls[queue]
            env["DLQ_URL"] = self.dlq_urls[queue]
        return env


def create_resources(max_receive_count: int = 3) -> Resources:
    res = Resources()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=res.bucket)
    ddb = boto3.client("dynamodb", region_name=REGION)
    for name, spec in TABLES.items():
        table = f"pixflare-{name}"
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **spec)
        res.tables[name] = table
    sqs = boto3.client("sqs", region_name=REGION)
    for name, visibility in QUEUES.items():
        dlq_url = sqs.create_queue(QueueName=f"pixflare-{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        url = sqs.create_queue(
            QueueName=f"pixflare-{name}",
            Attributes={
                "VisibilityTimeout": str(visibility),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
                ),
            },
        )["QueueUrl"]
        res.queue_urls[name] = url
        res.dlq_urls[name] = dlq_url
        res.queue_arns[name] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
    # As the stack configures it: every original created is announced on the ingest queue.
    s3.put_bucket_notification_configuration(
        Bucket=res.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": res.queue_arns["ingest"],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "suffix", "Value": ORIGINAL_SUFFIX}]}
                    },
                }
            ]
        },
    )
    kms = boto3.client("kms", region_name=REGION)
    res.kms_key_id = kms.create_key(Description="pixflare backups")["KeyMetadata"]["KeyId"]
    return res


def receive_all(queue_url: str, *, max_messages: int = 10, wait: int = 0) -> list[dict[str, Any]]:
    """Receive what is visible now (bounded: at most 10 rounds)."""
    sqs = boto3.client("sqs", region_name=REGION)
    out: list[dict[str, Any]] = []
    for _ in range(10):
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, max_messages - len(out)),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=wait,
        ).get("Messages", [])
        out.extend(got)
        if not got or len(out) >= max_messages:
            break
    return out


def queue_counts(queue_url: str, sqs: Any | None = None) -> tuple[int, int]:
    """(visible, in flight) of a queue, through ``sqs`` (default: in-process moto's)."""
    client = sqs or boto3.client("sqs", region_name=REGION)
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )
