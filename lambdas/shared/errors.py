"""Our own error types, and the one adapter that turns botocore errors into them.

The worker runtime decides retry versus give-up from these types alone:
TransientError -> back off and retry (then the DLQ); PermanentError -> record
and acknowledge; InvalidMessageError -> straight to the DLQ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


class PixflareError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(PixflareError):
    """A missing or malformed setting: fix the deployment, then redrive."""


class TransientError(PixflareError):
    """Worth retrying later: throttling, 5xx, timeouts, an unreachable endpoint."""


class OutOfTimeError(TransientError):
    """Too little time left in this invocation for another network call."""


class PermanentError(PixflareError):
    """Retrying cannot help: the input is bad or what it refers to is gone."""


class NotFoundError(PermanentError):
    """A record or object the job needs does not exist."""


class InvalidMessageError(PixflareError):
    """A queue message that does not parse or does not match its schema."""


class ConditionFailedError(PixflareError):
    """A conditional write lost: the state is not what the caller expected."""


class AccessDeniedError(TransientError):
    """Credentials or policy refused the call.

    Transient on purpose: a fixed policy followed by a DLQ redrive finishes the job;
    calling it permanent would mark images failed for a deployment mistake.
    """


_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "SlowDown",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "PriorThrottled",
}
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "ResourceNotFoundException"}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "403",
}


def translate_client_error(err: ClientError, *, context: str) -> PixflareError:
    """Map a botocore ClientError to our error type; never loses the original text."""
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or code
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"{context}: {code or status} {message}".strip()
    if code == "ConditionalCheckFailedException" or (
        code == "TransactionCanceledException" and "ConditionalCheckFailed" in message
    ):
        return ConditionFailedError(text)
    if code in _THROTTLING or status == 429 or status >= 500:
        return TransientError(text)
    if code in _NOT_FOUND or status == 404:
        return NotFoundError(text)
    if code in _DENIED or status == 403:
        return AccessDeniedError(text)
    if code in {
        "ValidationException",
        "InvalidParameterValue",
        "InvalidParameterException",
        "InvalidImageFormatException",
        "ImageTooLargeException",
        "InvalidRequest",
    }:
        return PermanentError(text)
    # Unknown codes are retried: losing a job to an unexpected error is worse than a DLQ entry.
    return TransientError(text)


def translate_botocore_error(err: BotoCoreError, *, context: str) -> PixflareError:
    inner = getattr(err, "kwargs", {}).get("error")
    if isinstance(inner, PixflareError):
        # One of ours raised inside botocore's HTTP layer (an endpoint refused at
        # connect, say), which wraps it in HTTPClientError: it keeps its own type.
        return type(inner)(*inner.args)
    if isinstance(
        err,
        EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError,
    ):
        return TransientError(f"{context}: {err}")
    return TransientError(f"{context}: {type(err).__name__}: {err}")


@contextlib.contextmanager
def aws_errors(context: str) -> Iterator[None]:
    """Run AWS calls, re-raising botocore failures as our own error types."""
    try:
        yield
    except ClientError as err:
        raise translate_client_error(err, context=context) from err
    except BotoCoreError as err:
        raise translate_botocore_error(err, context=context) from err
