"""Event factories: SQS events built from real (moto) messages or from scratch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:test-queue"


@dataclass
class FakeLambdaContext:
    """The parts of a Lambda context the runtime and Powertools read."""

    remaining_ms: int = 30_000
    function_name: str = "pixflare-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:pixflare-test"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/pixflare-test"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def sqs_record(
    body: str,
    *,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    receive_count: int = 1,
    queue_arn: str = QUEUE_ARN,
) -> dict[str, Any]:
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or f"handle-{uuid.uuid4()}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000000",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def event_from_received(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS event for messages received from a real (moto) queue, as Lambda's poller builds it."""
    return sqs_event(
        [
            sqs_record(
                m["Body"],
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                receive_count=int(m["Attributes"]["ApproximateReceiveCount"]),
                queue_arn=queue_arn,
            )
            for m in messages
        ]
    )


def s3_object_created(
    bucket: str, key: str, *, etag: str = "", size: int = 0, event_name: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    """An S3 event notification body as S3 writes it to a queue (the key URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-12-02T10:00:00.000Z",
                "eventName": event_name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "ingest",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag,
                        "sequencer": uuid.uuid4().hex[:16].upper(),
                    },
                },
            }
        ]
    }
