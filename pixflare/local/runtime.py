"""The local stack's Lambda service: functions, SQS pollers, schedules.

Each function runs from its deployment artifacts in execution environments of its
own (CPython 3.12 processes under the Runtime Interface Client, see
pixflare.local.environments); a batch still running at the function's Timeout is
ended the way Lambda ends it: the process is killed and the environment discarded.

A :class:`QueuePoller` behaves like an event source mapping: it collects up to
BatchSize messages or until MaximumBatchingWindowInSeconds ends, runs at most
MaximumConcurrency batches at once, and deletes only what the function reports
as done (ReportBatchItemFailures) — or the whole batch when the function returns
without a partial response. An error, a timeout or a process killed for memory
fails the whole batch: nothing is deleted, and the messages
come back after their visibility timeout (or the backoff the worker runtime set),
reaching the DLQ after maxReceiveCount receives through the queue's own redrive
policy, as on AWS.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from lambdas.shared.config import RUNTIME_VARIABLES, settings_from_env
from pixflare.local.cron import RateSchedule, Schedule, ScheduleError, parse_schedule
from pixflare.local.environments import (
    EnvironmentStats,
    FunctionEnvironments,
    FunctionImage,
    Invocation,
)
from pixflare.local.template import FunctionSpec, MappingSpec, RuleSpec

POLL_WAIT_SECONDS = 1  # long-poll length: bounds how long stop() waits for a poller
SQS_MAX_RECEIVE = 10


class LocalFunction:
    """One AWS::Lambda::Function of the template, run from its deployment artifacts.

    Every invocation goes to an execution environment of its own: a CPython 3.12
    process with the code asset and layers, loaded by the Runtime Interface Client
    (pixflare.local.environments), so what runs here is what Lambda runs.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        image: FunctionImage,
        environment: Mapping[str, str],
        region: str,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.environment = dict(environment)
        self.environments = FunctionEnvironments(
            name=spec.name,
            arn=spec.arn,
            handler=spec.handler,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            image=image,
            environment=self.environment,
            region=region,
            log=log,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stats(self) -> EnvironmentStats:
        return self.environments.stats

    def invoke(self, event: Any) -> Invocation:
        return self.environments.invoke(event)

    def close(self) -> None:
        self.environments.close()


def function_environment(
    spec: FunctionSpec, stack_env: Mapping[str, str], *, lambda_env: Mapping[str, str]
) -> dict[str, str]:
    """A function's variables: the template's, runtime settings from the stack's own
    environment winning (ENABLE_AI_CLASSIFICATION=true pixflare local up), never its
    resource names, then what the local stack adds (endpoint, credentials)."""
    environment = {
        **spec.environment,
        **{k: v for k, v in stack_env.items() if k in RUNTIME_VARIABLES},
        **lambda_env,
    }
    settings_from_env(environment)  # a bad value stops the stack here, named
    return environment


class Invokable(Protocol):
    """What a poller or the scheduler needs of a function."""

    @property
    def name(self) -> str: ...

    spec: FunctionSpec

    def invoke(self, event: Any) -> Invocation: ...


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


@dataclass
class ScheduledRun:
    rule: str
    at: datetime
    ok: bool
    error: str | None = None


class RuleScheduler:
    """Invokes each scheduled EventBridge rule's Lambda targets on its expression."""

    def __init__(
        self,
        rules: list[tuple[RuleSpec, Schedule, list[tuple[Invokable, str | None]]]],
        *,
        stop: threading.Event,
        clock: Callable[[], datetime] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.rules = rules
        self.stop_event = stop
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_error = on_error
        self.started = self.clock()
        self.runs: list[ScheduledRun] = []
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def next_runs(self, after: datetime | None = None) -> list[tuple[RuleSpec, datetime | None]]:
        moment = after or self.clock()
        out: list[tuple[RuleSpec, datetime | None]] = []
        for spec, schedule, _ in self.rules:
            if isinstance(schedule, RateSchedule):
                out.append((spec, schedule.next_after(moment, start=self.started)))
            else:
                out.append((spec, schedule.next_after(moment)))
        return out

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def _loop(self) -> None:
        due = {spec.logical_id: at for spec, at in self.next_runs(self.started)}
        while not self.stop_event.wait(1.0):
            now = self.clock()
            for spec, schedule, targets in self.rules:
                at = due.get(spec.logical_id)
                if at is None or now < at:
                    continue
                for function, payload in targets:
                    self._fire(spec, function, payload, at)
                if isinstance(schedule, RateSchedule):
                    due[spec.logical_id] = schedule.next_after(now, start=self.started)
                else:
                    due[spec.logical_id] = schedule.next_after(now)

    def fire_now(self, logical_id: str) -> list[ScheduledRun]:
        """Run one rule's targets now, as its schedule would (what an operator gets from
        EventBridge's "run now"); KeyError when no rule has that logical id."""
        for spec, _, targets in self.rules:
            if spec.logical_id == logical_id:
                at = self.clock()
                return [self._fire(spec, function, payload, at) for function, payload in targets]
        raise KeyError(f"no scheduled rule {logical_id}")

    def _fire(
        self, spec: RuleSpec, function: Invokable, payload: str | None, at: datetime
    ) -> ScheduledRun:
        event = json.loads(payload) if payload else _scheduled_event(spec, at)
        result = function.invoke(event)
        run = ScheduledRun(spec.logical_id, at, result.ok, result.error)
        self.runs.append(run)
        if not result.ok and self.on_error is not None:
            self.on_error(f"rule {spec.logical_id}: {function.name} failed: {result.error}")
        return run


def _scheduled_event(spec: RuleSpec, at: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": [spec.logical_id],
        "detail": {},
    }


def parse_rule_schedule(spec: RuleSpec) -> Schedule:
    """A rule's parsed expression; ScheduleError names the rule that cannot be read."""
    try:
        return parse_schedule(spec.schedule_expression)
    except ScheduleError as err:
        raise ScheduleError(f"rule {spec.logical_id}: {err}") from None
