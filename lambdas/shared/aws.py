"""boto3 clients, made on first use and cached, with timeouts that fit the time left.

Never at import time: moto and the local stack point clients elsewhere by
setting AWS_ENDPOINT_URL (which boto3 honours) before the first call, and
:func:`reset_clients` forgets them between tests.

Every call must fail before the function does (a Lambda cut off mid-call fails
its whole batch and reports nothing). The runtime binds a deadline for each
invocation (``Deadline.bound`` in lambdas.shared.deadline); each call then
goes through the client with the longest timeouts whose worst case (connect +
read per attempt, all attempts, the retry backoff) still ends a margin before
that deadline, and is refused with :class:`OutOfTimeError` (retried later, like any transient
failure) when not even the shortest fits. The functions below hand out
proxies that choose per call, so a client kept for a while stays honest.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from lambdas.shared.deadline import Deadline
from lambdas.shared.errors import TransientError, aws_errors

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


def worst_case_call_seconds() -> float:
    """How long one client call can take before it fails, SDK retries included."""
    return AWS_TIMEOUTS[0].worst_case_seconds()


def seconds_needed(*calls: Timeouts) -> float:
    """Time that must be left to make these calls one after another, each with these
    timeouts at worst, and still report: what every time threshold is derived from."""
    return sum(t.worst_case_seconds() for t in calls) + REPORT_MARGIN_SECONDS


# The least time in which one AWS call can be made at all (its shortest timeouts, 3 s,
# and the report margin): 4 s.
MIN_CALL_SECONDS = seconds_needed(AWS_TIMEOUTS[-1])


def timeouts_for_now(choices: Sequence[Timeouts], what: str) -> Timeouts:
    """The longest of ``choices`` (longest first) whose worst case fits the time left."""
    deadline = Deadline.current()
    for timeouts in choices:
        if deadline.fits(seconds_needed(timeouts)):
            return timeouts
    deadline.require(seconds_needed(choices[-1]), what)
    return choices[-1]  # the time ran out between the two looks: the shortest, then


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


@functools.cache
def _presigner() -> Any:
    return _session().client(
        "s3", config=client_config(signature_version="s3v4", s3={"addressing_style": "virtual"})
    )


def s3_presigner() -> S3Client:
    """S3 client for presigned URLs and POSTs: SigV4 (regions opened since 2014 refuse
    anything else) and the bucket's own virtual-hosted endpoint, so a browser's POST is
    not redirected (a redirect breaks CORS); an IP endpoint such as the local stack's
    falls back to path style. Presigning makes no network call: no deadline applies."""
    return _presigner()


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


# -- what a batch API hands back unprocessed ----------------------------------------------
# One policy for every batch call: retried a bounded number of rounds with a short,
# growing pause (unprocessed items come back under throttling), then a TransientError.
UNPROCESSED_ROUNDS = 8
UNPROCESSED_BACKOFF_SECONDS = 0.05
BATCH_GET_LIMIT = 100  # keys per BatchGetItem


def pause_for_unprocessed(round_number: int) -> None:
    """Give a throttled table (or queue) a moment before the next round (at most 1 s)."""
    time.sleep(min(1.0, UNPROCESSED_BACKOFF_SECONDS * (2**round_number)))


def batch_get_items(
    table: str,
    keys: Sequence[Mapping[str, Any]],
    what: str,
    **options: Any,
) -> list[dict[str, Any]]:
    """BatchGetItem of ``keys`` (100 a call), unprocessed keys retried under the policy
    above; ``options`` go with the keys (ConsistentRead, ProjectionExpression, ...)."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request: dict[str, Any] = {
            table: {"Keys": list(keys[start : start + BATCH_GET_LIMIT]), **options}
        }
        for round_number in range(UNPROCESSED_ROUNDS):
            with aws_errors(what):
                response = dynamodb().batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            pause_for_unprocessed(round_number)
        else:
            raise TransientError(f"{what}: still throttled after {UNPROCESSED_ROUNDS} rounds")
    return items


def reset_clients() -> None:
    client.cache_clear()
    _presigner.cache_clear()
    _client.cache_clear()
    _session.cache_clear()
