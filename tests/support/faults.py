"""Fault injection into botocore calls made through the project's cached clients.

A hook on ``before-call.{service}.{operation}`` raises a real ClientError (or a
botocore timeout) before the request is sent, exactly as the SDK would after
exhausting its own retries. Faults are chosen by a seeded RNG, so a failing run
can be replayed, and every injector has a bound on how many faults it injects.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

from lambdas.shared import aws

THROTTLE = ("ThrottlingException", 400, "Rate exceeded")
SLOW_DOWN = ("SlowDown", 503, "Please reduce your request rate")
INTERNAL = ("InternalError", 500, "We encountered an internal error")
ProvisionedThroughputExceeded = (
    "ProvisionedThroughputExceededException",
    400,
    "throughput exceeded",
)


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
        raise ReadTimeoutError(endpoint_url="https://injected-fault.invalid")
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
        client = aws.client(service)

        def hook(params: dict[str, Any], model: Any, _service: str = service, **_: Any) -> None:
            name = f"{_service}.{model.name}"
            if plan.matches(_service, model.name) and plan.decide(name, params):
                _raise(plan, model.name)

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
