"""Event source mappings: a :class:`QueuePoller` feeds one queue to one function.

It collects up to BatchSize messages or until MaximumBatchingWindowInSeconds ends,
runs at most MaximumConcurrency batches at once, and deletes only what the function
reports as done (ReportBatchItemFailures) — or the whole batch when the function
returns without a partial response. An error, a timeout or a process killed for
memory fails the whole batch: nothing is deleted, and the messages come back after
their visibility timeout (or the backoff the worker runtime set), reaching the DLQ
after maxReceiveCount receives through the queue's own redrive policy, as on AWS.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pixflare.local.functions import Invokable
from pixflare.local.template import MappingSpec

POLL_WAIT_SECONDS = 1  # long-poll length: bounds how long stop() waits for a poller
SQS_MAX_RECEIVE = 10


def _lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    converted = {}
    for name, value in attributes.items():
        converted[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType", "String"),
        }
    return converted


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS poller builds from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": _lambda_message_attributes(m.get("MessageAttributes", {})),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def failed_item_ids(response: Any, batch_ids: set[str]) -> set[str] | None:
    """Message ids the function reported as failed; None when the response is unusable
    (then, as on AWS, the whole batch counts as failed)."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    found: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in batch_ids:
            return None
        found.add(identifier)
    return found


@dataclass
class PollerStats:
    batches: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    messages: int = 0
    deleted: int = 0
    failed_batches: int = 0
    failed_items: int = 0
    last_error: str | None = None


class QueuePoller:
    """An event source mapping: one queue feeding one function."""

    def __init__(
        self,
        mapping: MappingSpec,
        function: Invokable,
        *,
        sqs: Any,
        region: str,
        stop: threading.Event,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.mapping = mapping
        self.function = function
        self.sqs = sqs
        self.region = region
        self.stop_event = stop
        self.on_error = on_error
        self.stats = PollerStats()
        self._slots = threading.BoundedSemaphore(max(1, mapping.max_concurrency))
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._poller = threading.Thread(
            target=self._loop, name=f"poller-{mapping.logical_id}", daemon=True
        )

    def start(self) -> None:
        self._poller.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._poller.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            running = list(self._threads)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- polling ---------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stop_event.is_set():
            if not self._slots.acquire(timeout=POLL_WAIT_SECONDS):
                continue
            try:
                batch = self._collect()
            except Exception as err:
                self._slots.release()
                self._report(f"receive from {self.mapping.queue_url}: {err}")
                self.stop_event.wait(POLL_WAIT_SECONDS)
                continue
            if not batch:
                self._slots.release()
                continue
            thread = threading.Thread(
                target=self._run_batch,
                args=(batch,),
                name=f"batch-{self.mapping.logical_id}",
                daemon=True,
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _collect(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages, or what arrived before the batching window closed."""
        batch: list[dict[str, Any]] = []
        window_ends: float | None = None
        while len(batch) < self.mapping.batch_size and not self.stop_event.is_set():
            if window_ends is None:
                wait = POLL_WAIT_SECONDS
            else:
                remaining = window_ends - time.monotonic()
                if remaining <= 0:
                    break
                wait = max(0, min(POLL_WAIT_SECONDS, int(remaining)))
            got = self.sqs.receive_message(
                QueueUrl=self.mapping.queue_url,
                MaxNumberOfMessages=min(SQS_MAX_RECEIVE, self.mapping.batch_size - len(batch)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            batch.extend(got)
            if not got and wait == 0:
                # Inside the last second of the window: short naps, not a busy loop.
                self.stop_event.wait(0.1)
            if batch and window_ends is None:
                window_ends = time.monotonic() + self.mapping.batching_window_seconds
                if self.mapping.batching_window_seconds == 0:
                    break
            if not batch:
                return batch
            if not got and window_ends is not None and time.monotonic() >= window_ends:
                break
        return batch

    def _run_batch(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._invoke(batch)
        except Exception as err:
            self._report(f"{self.function.name}: {err}")
        finally:
            self._slots.release()

    def _invoke(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self.stats.batches += 1
            self.stats.batch_sizes[len(batch)] += 1
            self.stats.messages += len(batch)
        event = sqs_event(batch, self.mapping.queue_arn, self.region)
        result = self.function.invoke(event)
        ids = {m["MessageId"] for m in batch}
        if not result.ok:
            with self._lock:
                self.stats.failed_batches += 1
                self.stats.last_error = result.error
            self._report(f"{self.function.name}: batch of {len(batch)} failed: {result.error}")
            return
        if self.mapping.report_batch_item_failures:
            failed = failed_item_ids(result.response, ids)
        else:
            failed = set()
        if failed is None:
            with self._lock:
                self.stats.failed_batches += 1
                self.stats.last_error = "unusable batchItemFailures response"
            self._report(f"{self.function.name}: unusable partial batch response")
            return
        done = [m for m in batch if m["MessageId"] not in failed]
        self._delete(done)
        with self._lock:
            self.stats.failed_items += len(failed)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_RECEIVE):
            chunk = messages[start : start + SQS_MAX_RECEIVE]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            with self._lock:
                self.stats.deleted += len(response.get("Successful", []))
            if response.get("Failed"):
                self._report(f"delete failed for {len(response['Failed'])} message(s)")

    def _report(self, message: str) -> None:
        if self.on_error is not None:
            self.on_error(message)
