"""The batch calls the daily jobs make: many items per request, so cost grows with
items / batch size rather than with items.

Whatever a batch API hands back unprocessed is retried under the one policy in
lambdas.shared.aws (bounded rounds with backoff), then reported as a
TransientError (the job's step is retried as a whole; every step is idempotent).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from lambdas.shared import aws
from lambdas.shared.config import Settings
from lambdas.shared.errors import TransientError, aws_errors
from lambdas.shared.messages import BackupJob, JobMessage

BATCH_WRITE_LIMIT = 25  # requests per BatchWriteItem
SEND_BATCH_LIMIT = 10  # entries per SendMessageBatch


def chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_write(table: str, requests: Sequence[dict[str, Any]]) -> int:
    """BatchWriteItem in chunks of 25 (PutRequest / DeleteRequest dicts); returns how many."""
    for chunk in chunks(requests, BATCH_WRITE_LIMIT):
        pending: dict[str, Any] = {table: list(chunk)}
        for round_number in range(aws.UNPROCESSED_ROUNDS):
            with aws_errors(f"batch write to {table}"):
                response = aws.dynamodb().batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
            aws.pause_for_unprocessed(round_number)
        else:
            raise TransientError(f"batch write to {table} still throttled")
    return len(requests)


def send_batch(queue_url: str, messages: Sequence[JobMessage]) -> int:
    """SendMessageBatch in tens; entries SQS refuses are re-sent a bounded number of times."""
    for chunk in chunks(messages, SEND_BATCH_LIMIT):
        entries: list[Any] = [
            {"Id": str(index), "MessageBody": message.to_body()}
            for index, message in enumerate(chunk)
        ]
        for round_number in range(aws.UNPROCESSED_ROUNDS):
            with aws_errors(f"send {len(entries)} {chunk[0].kind} messages"):
                response = aws.sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
            failed = {f["Id"]: f for f in response.get("Failed") or []}
            if not failed:
                break
            entries = [entry for entry in entries if entry["Id"] in failed]
            aws.pause_for_unprocessed(round_number)
        else:
            raise TransientError(f"{len(entries)} messages still refused by SQS")
    return len(messages)


def enqueue_backup_jobs(settings: Settings, jobs: Sequence[BackupJob]) -> int:
    """Queue backup jobs in batches; nothing is sent when queues are disabled."""
    if not settings.enable_queues or not jobs:
        return 0
    return send_batch(settings.require("backup_queue_url"), jobs)
