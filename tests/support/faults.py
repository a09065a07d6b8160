"""Fault injection into botocore calls made through the project's cached clients.

A hook on ``before-call.{service}.{operation}`` raises a real ClientError (or a
botocore timeout) before the request is sent, exactly as the SDK would after
exhausting its own retries. Faults are chosen by a seeded RNG, so a failing run
can be replayed, and every injector has a bound on how many faults it injects.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from lambdas.shared import aws

THROTTLE = ("ThrottlingException", 400, "Rate exceeded")
SLOW_DOWN = ("SlowDown", 503, "Please reduce your request rate")
INTERNAL = ("InternalError", 500, "We encountered an internal error")
ProvisionedThroughputExceeded = (
    "ProvisionedThroughputExceededException",
    400,
    "throughput exceeded",
)


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the handler may catch it, as nothing catches a kill."""


@dataclass
class FaultPlan:
    """Which calls fail and how: operation names like ``s3.PutObject`` or ``dynamodb.*``."""

    targets: tuple[str, ...]
    rate: float = 1.0
    max_faults: int = 1_000
    kind: tuple[str, int, str] | str = INTERNAL
    seed: int = 1234
    only_if: Callable[[dict[str, Any]], bool] | None = None
    injected: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def matches(self, service: str, operation: str) -> bool:
        return any(t in (f"{service}.{operation}", f"{service}.*", "*") for t in self.targets)

    def decide(self, name: str, params: dict[str, Any]) -> bool:
        with self._lock:
            self.calls[name] += 1
            if sum(self.injected.values()) >= self.max_faults:
                return False
            if self.only_if is not None and not self.only_if(params):
                return False
            if self._rng.random() >= self.rate:
                return False
            self.injected[name] += 1
            return True


def _raise(plan: FaultPlan, operation: str) -> None:
    if plan.kind == "timeout":
        # What botocore raises when a response is slower than the client's read_timeout.
        raise ReadTimeoutError(endpoint_url="https://injected-fault.invalid")
    if plan.kind == "connect":
        raise EndpointConnectionError(endpoint_url="https://injected-fault.invalid")
    if plan.kind == "crash":
        # The process dies mid-call (a function timeout or OOM): not one of our errors.
        raise SimulatedCrash(f"injected crash before {operation}")
    assert isinstance(plan.kind, tuple)
    code, status, message = plan.kind
    raise ClientError(
        {
            "Error": {"Code": code, "Message": f"injected: {message}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


@contextmanager
def inject(
    plan: FaultPlan, services: tuple[str, ...] = ("s3", "dynamodb", "sqs")
) -> Iterator[FaultPlan]:
    """Register the plan on each service's cached client for the duration of the block."""
    registered: list[tuple[Any, str, Callable[..., Any]]] = []
    for service in services:

        def hook(params: dict[str, Any], model: Any, _service: str = service, **_: Any) -> None:
            name = f"{_service}.{model.name}"
            if plan.matches(_service, model.name) and plan.decide(name, params):
                _raise(plan, model.name)

        # Every client behind the service: which one a call uses depends on the time left.
        for client in aws.client(service).every_client():
            event = f"before-call.{client.meta.service_model.service_name}"
            client.meta.events.register(event, hook, unique_id=f"fault-{id(plan)}-{service}")
            registered.append((client, event, hook))
    try:
        yield plan
    finally:
        for client, event, _hook in registered:
            client.meta.events.unregister(
                event, unique_id=f"fault-{id(plan)}-{client.meta.service_model.service_name}"
            )


# -- driving a real (moto) queue -------------------------------------------------------


@dataclass
class DriveResult:
    """What happened while a queue was driven until it was empty (or the rounds ran out)."""

    rounds: int = 0
    deliveries: int = 0
    retried: int = 0
    done: list[str] = field(default_factory=list)


def drive_queue(
    queue_url: str,
    queue_arn: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    *,
    batch_size: int,
    remaining_ms: int = 30_000,
    max_rounds: int = 60,
    region: str = "us-east-1",
    context: Any = None,
    between_rounds: Callable[[], Any] | None = None,
) -> DriveResult:
    """Do what Lambda's SQS poller does, in bounded rounds: receive up to ``batch_size``,
    call the handler, delete every record it did not report as failed.

    Failed records stay in flight with the visibility the worker set (0 when
    BACKOFF_BASE_SECONDS is 0), so the next round receives them again and SQS's
    redrive policy moves them to the DLQ after maxReceiveCount receives.
    """
    import boto3

    from tests.support.events import FakeLambdaContext, event_from_received

    sqs = boto3.client("sqs", region_name=region)
    result = DriveResult()
    for _ in range(max_rounds):
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, batch_size),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        result.rounds += 1
        result.deliveries += len(messages)
        try:
            response = handler(
                event_from_received(messages, queue_arn),
                context if context is not None else FakeLambdaContext(remaining_ms),
            )
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except (Exception, SimulatedCrash):
            # A crashed invocation: Lambda deletes nothing; every record comes back.
            failed = {m["MessageId"] for m in messages}
            for m in messages:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        result.retried += len(failed)
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
                result.done.append(m["MessageId"])
        if between_rounds is not None:
            between_rounds()
    return result


def redrive(dlq_url: str, queue_url: str, *, region: str = "us-east-1") -> int:
    """Move every message from a DLQ back to its queue (what `pixflare dlq redrive` does)."""
    import boto3

    sqs = boto3.client("sqs", region_name=region)
    moved = 0
    for _ in range(100):
        messages = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        for m in messages:
            sqs.send_message(QueueUrl=queue_url, MessageBody=m["Body"])
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    return moved


def queue_depth(queue_url: str, *, region: str = "us-east-1") -> int:
    """Visible + in flight + delayed messages."""
    import boto3

    attributes = boto3.client("sqs", region_name=region).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


# -- a backup destination that is down ------------------------------------------------


class FlakyProxy:
    """A loopback TCP proxy in front of ``upstream`` that resets the first
    ``refuse_first`` connections (a destination that is down), then forwards bytes
    both ways. ``refused`` and ``forwarded`` count connections."""

    def __init__(self, upstream_port: int, *, refuse_first: int = 0) -> None:
        self.upstream_port = upstream_port
        self.refuse_first = refuse_first
        self.refused = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_down(self, connections: int) -> None:
        """Reset the next ``connections`` connections."""
        with self._lock:
            self.refuse_first = self.refused + connections

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                refuse = self.refused < self.refuse_first
                if refuse:
                    self.refused += 1
                else:
                    self.forwarded += 1
            if refuse:
                # SO_LINGER 0: close sends RST, as a host with nothing listening would.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        pair = ((client, upstream), (upstream, client))
        pumps = [threading.Thread(target=_pump, args=p, daemon=True) for p in pair]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join(timeout=60)
        client.close()
        upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    source.settimeout(30)
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def expire_in_progress(table: str, *, region: str = "us-east-1", client: Any = None) -> int:
    """Age every INPROGRESS idempotency marker past its expiry.

    A cut-off invocation leaves its marker in progress until the function's remaining
    time runs out (at most the function timeout); the queue redelivers only after the
    backoff or visibility timeout, which is longer. With backoff 0 in tests, the
    redelivery comes at once, so this stands in for that wait instead of sleeping.
    """
    import boto3

    ddb = client if client is not None else boto3.client("dynamodb", region_name=region)
    aged = 0
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            if item.get("status", {}).get("S") == "INPROGRESS":
                ddb.update_item(
                    TableName=table,
                    Key={"id": item["id"]},
                    UpdateExpression="SET in_progress_expiration = :past",
                    ExpressionAttributeValues={":past": {"N": "0"}},
                )
                aged += 1
    return aged
