"""Clients for an owner's S3-compatible backup destination (AWS, MinIO, Backblaze B2, R2 ...).

boto3's default request checksums (CRC32 trailers on every upload) are refused or
mis-handled by several S3-compatible services, so checksums are only sent and
checked when an operation requires them. Timeouts are short: the backup function
has 60 s for a batch of ten, and a dead endpoint must fail fast and be retried later.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config

from lambdas.shared.aws import DeadlineBoundClient, Timeouts
from lambdas.shared.destinations import Destination, DestinationCredentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 2
MAX_POOL_CONNECTIONS = 8
# Longest first, chosen per call to fit the invocation's deadline (see
# lambdas.shared.aws): 32 s, 13 s, 6 s, retries included.
REMOTE_TIMEOUTS: tuple[Timeouts, ...] = (
    Timeouts(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, MAX_ATTEMPTS),
    Timeouts(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, 1),
    Timeouts(2, 4, 1),
)
DEFAULT_REGION = "us-east-1"


def remote_config(*, path_style: bool, timeouts: Timeouts = REMOTE_TIMEOUTS[0]) -> Config:
    settings: dict[str, Any] = {
        "connect_timeout": timeouts.connect,
        "read_timeout": timeouts.read,
        "retries": {"mode": "standard", "total_max_attempts": timeouts.attempts},
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "max_pool_connections": MAX_POOL_CONNECTIONS,
        "tcp_keepalive": True,
    }
    if path_style:
        settings["s3"] = {"addressing_style": "path"}
    return Config(**settings)


@functools.cache
def _session() -> boto3.session.Session:
    # One session so the S3 service model is parsed once per process, not per client.
    return boto3.session.Session()


def remote_client(destination: Destination, credentials: DestinationCredentials) -> S3Client:
    """An S3 client for the destination, signed with the owner's own credentials only;
    each call gets timeouts that fit the time left in the invocation."""

    @functools.cache
    def make(timeouts: Timeouts) -> Any:
        return _session().client(
            "s3",
            endpoint_url=destination.endpoint_url or None,
            region_name=destination.region or DEFAULT_REGION,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key.get_secret_value(),
            # Explicit keys with no token: an ambient session token must not leak in.
            aws_session_token=None,
            config=remote_config(path_style=destination.path_style, timeouts=timeouts),
        )

    return cast("S3Client", DeadlineBoundClient("backup destination", make, REMOTE_TIMEOUTS))
