"""boto3 clients, made on first use and cached, with timeouts that fit the time left.

Never at import time: moto and the local stack point clients elsewhere by
setting AWS_ENDPOINT_URL (which boto3 honours) before the first call, and
:func:`reset_clients` forgets them between tests.

Every call must fail before the function does (a Lambda cut off mid-call fails
its whole batch and reports nothing). The runtime sets a deadline for each
invocation (:func:`call_deadline`); each call then goes through the client
with the longest timeouts whose worst case (connect + read per attempt, all
attempts, the retry backoff) still ends a margin before that deadline, and is
refused with :class:`OutOfTimeError` (retried later, like any transient
failure) when not even the shortest fits. The functions below hand out
proxies that choose per call, so a client kept for a while stays honest.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from lambdas.shared.errors import OutOfTimeError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# Attempts are total attempts (botocore's total_max_attempts; its max_attempts
# counts retries only). With no deadline, or time to spare: (2 + 5) s x 2 attempts
# + one backoff (6 s, see below) = 20 s, inside the shortest function timeout (30 s).
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5
MAX_ATTEMPTS = 2
# botocore's standard mode waits at most min(2^(n-1), 20) s after attempt n, plus up
# to 5 s more when the service sends x-amz-retry-after.
_BACKOFF_CAP_SECONDS = 20
_RETRY_AFTER_EXTRA_SECONDS = 5
# Kept free after a call's worst case: the runtime still has to record the failure
# and answer with the batch's failed records.
REPORT_MARGIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float
    attempts: int  # in all, the first included

    def worst_case_seconds(self) -> float:
        """How long one call can take before it fails, SDK retries included."""
        backoff = sum(
            min(2 ** (n - 1), _BACKOFF_CAP_SECONDS) + _RETRY_AFTER_EXTRA_SECONDS
            for n in range(1, self.attempts)
        )
        return (self.connect + self.read) * self.attempts + backoff


# Longest first; the last is the least a call may be given (20 s, 7 s, 3 s).
AWS_TIMEOUTS: tuple[Timeouts, ...] = (
    Timeouts(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, MAX_ATTEMPTS),
    Timeouts(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, 1),
    Timeouts(1, 2, 1),
)

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "pixflare_call_deadline", default=None
)


def worst_case_call_seconds() -> float:
    """How long one client call can take before it fails, SDK retries included."""
    return AWS_TIMEOUTS[0].worst_case_seconds()


@contextlib.contextmanager
def call_deadline(seconds_left: float | None) -> Iterator[None]:
    """Within the block, every call made through these clients (and the destination
    clients of the backup) ends before ``seconds_left`` from now; None: no deadline."""
    token = _deadline.set(None if seconds_left is None else time.monotonic() + seconds_left)
    try:
        yield
    finally:
        _deadline.reset(token)


def seconds_left() -> float | None:
    """Time until the current deadline, or None without one."""
    end = _deadline.get()
    return None if end is None else end - time.monotonic()


def timeouts_for_now(choices: Sequence[Timeouts], what: str) -> Timeouts:
    """The longest of ``choices`` (longest first) whose worst case fits the time left."""
    left = seconds_left()
    if left is None:
        return choices[0]
    for timeouts in choices:
        if timeouts.worst_case_seconds() <= left - REPORT_MARGIN_SECONDS:
            return timeouts
    raise OutOfTimeError(
        f"{what}: not started, {max(left, 0.0):.1f} s left in this invocation "
        f"(a call needs up to {choices[-1].worst_case_seconds() + REPORT_MARGIN_SECONDS:.0f} s)"
    )


def in_this_context[T](fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, to run on a pool thread under the caller's deadline (a pool thread
    does not inherit the submitting thread's context). One per task: a context
    cannot be entered by two threads at once."""
    return functools.partial(contextvars.copy_context().run, fn)


class DeadlineBoundClient:
    """Looks like a boto3 client; each attribute comes from the client whose
    timeouts fit the time left when it is asked for."""

    def __init__(
        self, name: str, make: Callable[[Timeouts], Any], choices: Sequence[Timeouts]
    ) -> None:
        self._name = name
        self._make = make
        self._choices = tuple(choices)

    def current(self) -> Any:
        return self._make(timeouts_for_now(self._choices, self._name))

    def every_client(self) -> list[Any]:
        """One client per timeout choice (for tests that hook their events)."""
        return [self._make(t) for t in self._choices]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current(), name)


def client_config(timeouts: Timeouts | None = None, **overrides: Any) -> Config:
    timeouts = timeouts or AWS_TIMEOUTS[0]
    settings: dict[str, Any] = {
        "connect_timeout": timeouts.connect,
        "read_timeout": timeouts.read,
        "retries": {"mode": "standard", "total_max_attempts": timeouts.attempts},
        "tcp_keepalive": True,
    }
    settings.update(overrides)
    return Config(**settings)


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@functools.cache
def _client(service: str, timeouts: Timeouts) -> Any:
    return _session().client(service, config=client_config(timeouts))  # type: ignore[call-overload]


@functools.cache
def client(service: str) -> Any:
    """The service's client; each call gets timeouts that fit the current deadline."""
    return DeadlineBoundClient(service, functools.partial(_client, service), AWS_TIMEOUTS)


def s3() -> S3Client:
    return client("s3")


def dynamodb() -> DynamoDBClient:
    return client("dynamodb")


def sqs() -> SQSClient:
    return client("sqs")


def kms() -> KMSClient:
    return client("kms")


def rekognition() -> RekognitionClient:
    return client("rekognition")


def secretsmanager() -> SecretsManagerClient:
    return client("secretsmanager")


def reset_clients() -> None:
    client.cache_clear()
    _client.cache_clear()
    _session.cache_clear()
