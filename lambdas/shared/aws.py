"""boto3 clients, made on first use and cached.

Never at import time: moto and the local stack point clients elsewhere by
setting AWS_ENDPOINT_URL (which boto3 honours) before the first call, and
:func:`reset_clients` forgets them between tests.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# One call, retries included, must fail well inside the shortest function timeout (30 s)
# so the runtime can still report it: (2 + 5) s x 2 attempts + the standard mode's one
# backoff (at most 2 s) = 16 s. SQS redelivery is the retry beyond that.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5
MAX_ATTEMPTS = 2
MAX_RETRY_BACKOFF_SECONDS = 2


def worst_case_call_seconds() -> float:
    """How long one client call can take before it fails, SDK retries included."""
    return (
        CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS
    ) * MAX_ATTEMPTS + MAX_RETRY_BACKOFF_SECONDS * (MAX_ATTEMPTS - 1)


def client_config(**overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "retries": {"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        "tcp_keepalive": True,
    }
    settings.update(overrides)
    return Config(**settings)


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@functools.cache
def client(service: str) -> Any:
    return _session().client(service, config=client_config())  # type: ignore[call-overload]


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
    _session.cache_clear()
