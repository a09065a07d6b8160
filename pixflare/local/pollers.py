"""Event source mappings: a :class:`QueuePoller` feeds one queue to one function.

It collects up to BatchSize messages or until MaximumBatchingWindowInSeconds ends,
runs at most MaximumConcurrency batches at once, and deletes only what the function
reports as done (ReportBatchItemFailures) — or the whole batch when the function
returns without a partial response. An error, a timeout or a process killed for
memory fails the whole batch: nothing is deleted, and the messages come back after
their visibility timeout (or the backoff the worker runtime set), reaching the DLQ
after maxReceiveCount receives through the queue's own redrive policy, as on AWS.

Throttling (an account concurrency limit, ``LocalStack(account_concurrency=N)``): the
batch has been received (each message's receive count is up by one) when the
invocation finds no free slot. As AWS documents for SQS event sources ("If the
invocation fails due to throttling, Lambda gradually backs off retries ... Lambda
continues to retry the message until the message's timestamp exceeds your queue's
visibility timeout, at which point Lambda drops the message", Lambda developer guide,
services-sqs-errorhandling), the poller keeps the batch and retries with backoff
(THROTTLE_BACKOFF_* below; AWS does not publish its intervals) until the queue's
visibility timeout since the receive has nearly run out; then it gives the batch up:
nothing is deleted, the messages reappear when their visibility timeout ends, and that
receive has counted toward maxReceiveCount. Each refused attempt is a throttle of the
function; each batch given up counts in ``throttled_batches`` / ``throttled_messages``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pixflare.local.environments import Invocation
from pixflare.local.functions import Invokable
from pixflare.local.template import MappingSpec

POLL_WAIT_SECONDS = 1  # long-poll length (SQS counts whole seconds; 1 is the shortest)
SQS_MAX_RECEIVE = 10
# A throttled batch: each attempt waits this long for an account slot, then the poller
# backs off (doubling from FIRST to MAX) before the next attempt. Assumed figures.
THROTTLE_SLOT_WAIT_SECONDS = 0.1
THROTTLE_BACKOFF_FIRST_SECONDS = 0.5
THROTTLE_BACKOFF_MAX_SECONDS = 8.0
# Give a throttled batch up this long before its visibility timeout ends.
THROTTLE_GIVE_UP_MARGIN_SECONDS = 0.5
DEFAULT_VISIBILITY_SECONDS = 30  # SQS's default, when the queue does not say


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
    throttled_attempts: int = 0  # invocation attempts refused for want of a slot
    throttled_batches: int = 0  # batches given up: their messages reappear, receive counted
    throttled_messages: int = 0
    # The poller's own SQS requests (billed on AWS like any other).
    receive_calls: int = 0
    empty_receives: int = 0
    delete_calls: int = 0
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
        self._visibility: int | None = None
        self._poller = threading.Thread(
            target=self._loop, name=f"poller-{mapping.logical_id}", daemon=True
        )

    def start(self) -> None:
        self._poller.start()

    def join(self, timeout: float) -> None:
        """Once ``stop`` is set: wait (at most ``timeout``) for the batches it started.

        The receive loop itself is not waited for: it starts no batch once ``stop`` is
        set (checked under the lock that guards the list of batches), and the long poll
        it may be in ends by itself within POLL_WAIT_SECONDS; what that poll receives is
        left alone and comes back after its visibility timeout. Waiting for it was most
        of the stack's stop time.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            running = list(self._threads)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- polling ---------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stop_event.is_set():
            if not self._slots.acquire(timeout=POLL_WAIT_SECONDS):
                continue
            received_at = time.monotonic()
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
                args=(batch, received_at),
                name=f"batch-{self.mapping.logical_id}",
                daemon=True,
            )
            with self._lock:
                if self.stop_event.is_set():
                    # Received as the stack stops: left to reappear, as Lambda would.
                    self._slots.release()
                    return
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
            with self._lock:
                self.stats.receive_calls += 1
                self.stats.empty_receives += not got
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

    def _run_batch(self, batch: list[dict[str, Any]], received_at: float) -> None:
        try:
            self._invoke(batch, received_at)
        except Exception as err:
            self._report(f"{self.function.name}: {err}")
        finally:
            self._slots.release()

    def visibility_timeout(self) -> int:
        """The queue's VisibilityTimeout (read once)."""
        if self._visibility is None:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.mapping.queue_url, AttributeNames=["VisibilityTimeout"]
            ).get("Attributes", {})
            self._visibility = int(attributes.get("VisibilityTimeout", DEFAULT_VISIBILITY_SECONDS))
        return self._visibility

    def _invoke_throttled(self, event: Any, received_at: float) -> Invocation | None:
        """Invoke under the account limit, retrying throttles with backoff until the
        batch's visibility timeout has nearly run out; None when it was given up."""
        try_invoke = getattr(self.function, "try_invoke", None)
        if try_invoke is None:
            return self.function.invoke(event)
        give_up_at = received_at + self.visibility_timeout() - THROTTLE_GIVE_UP_MARGIN_SECONDS
        backoff = THROTTLE_BACKOFF_FIRST_SECONDS
        while True:
            result: Invocation | None = try_invoke(event, THROTTLE_SLOT_WAIT_SECONDS)
            if result is not None:
                return result
            with self._lock:
                self.stats.throttled_attempts += 1
            pause = min(backoff, give_up_at - time.monotonic())
            if pause <= 0 or self.stop_event.wait(pause):
                return None
            backoff = min(backoff * 2, THROTTLE_BACKOFF_MAX_SECONDS)

    def _invoke(self, batch: list[dict[str, Any]], received_at: float | None = None) -> None:
        with self._lock:
            self.stats.batches += 1
            self.stats.batch_sizes[len(batch)] += 1
            self.stats.messages += len(batch)
        event = sqs_event(batch, self.mapping.queue_arn, self.region)
        started = time.monotonic() if received_at is None else received_at
        result = self._invoke_throttled(event, started)
        if result is None:
            # Throttled until the visibility timeout: nothing deleted, the receive counted.
            with self._lock:
                self.stats.throttled_batches += 1
                self.stats.throttled_messages += len(batch)
            return
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
                self.stats.delete_calls += 1
                self.stats.deleted += len(response.get("Successful", []))
            if response.get("Failed"):
                self._report(f"delete failed for {len(response['Failed'])} message(s)")

    def _report(self, message: str) -> None:
        if self.on_error is not None:
            self.on_error(message)
