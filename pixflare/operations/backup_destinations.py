"""Setting an owner's backup destination: validate, prove it works, then save it.

The endpoint first goes through the endpoint policy (lambdas/shared/endpoint_policy.py:
``https://`` and public addresses only, unless the operator allows private
endpoints); a refused one is neither checked nor saved. The check writes a small
object under the owner's prefix, reads it back and deletes it, with the same client
(and the same pinned addresses) the backup function uses, and says which step failed
and why in words an owner can act on.

Once saved, the owner's images not yet backed up at this destination (uploaded
before it was set, or backed up to one it replaces) are marked ``pending`` and
queued: lambdas/cron/backup_sync.py ``Backfill``. A re-set of the same destination
queues only what is not backed up there.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lambdas.backup.remote import check_endpoint, remote_client
from lambdas.cron.backup_sync import PROGRESS_STATES, Backfill, BackfillRound, progress_state
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.destinations import (
    Destination,
    DestinationCredentials,
    DestinationRepository,
    encrypt_credentials,
)
from lambdas.shared.endpoint_policy import EndpointPolicy
from lambdas.shared.errors import (
    AccessDeniedError,
    NotFoundError,
    PermanentError,
    PixflareError,
    TransientError,
    aws_errors,
)
from lambdas.shared.images import ImageRepository
from lambdas.shared.keys import InvalidNameError, validate_segment

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# S3's bucket rules, loosened only as far as MinIO / B2 / R2 accept.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9-]{0,32}")
MAX_PREFIX_LENGTH = 256
PROBE_DIRECTORY = ".pixflare-check"


class InvalidDestinationError(PermanentError):
    """The destination as given can never work (a malformed URL, bucket or prefix)."""


class DestinationCheckError(PermanentError):
    """The destination did not pass the write / read / delete check."""


@dataclass(frozen=True)
class DestinationRequest:
    owner: str
    bucket: str
    credentials: DestinationCredentials
    endpoint_url: str = ""
    region: str = ""
    prefix: str = ""
    path_style: bool = False
    encrypt: bool = False


def normalize_prefix(prefix: str) -> str:
    """``photos`` and ``/photos/`` both become ``photos/``; keys are ``{prefix}{owner}/...``."""
    cleaned = prefix.strip().strip("/")
    if not cleaned:
        return ""
    if len(cleaned) > MAX_PREFIX_LENGTH:
        raise InvalidDestinationError(f"prefix is longer than {MAX_PREFIX_LENGTH} characters")
    for part in cleaned.split("/"):
        try:
            validate_segment("prefix", part)
        except InvalidNameError as err:
            raise InvalidDestinationError(str(err)) from None
    return cleaned + "/"


def validate_request(request: DestinationRequest) -> Destination:
    """The destination to save, or InvalidDestinationError naming what is wrong."""
    try:
        validate_segment("owner", request.owner)
    except InvalidNameError as err:
        raise InvalidDestinationError(str(err)) from None
    endpoint = request.endpoint_url.strip().rstrip("/")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise InvalidDestinationError(
                f"endpoint {endpoint!r} must be an http:// or https:// URL"
            )
        if parts.username or parts.password or parts.query or parts.fragment:
            raise InvalidDestinationError(
                "endpoint must not carry credentials, a query or a fragment"
            )
    if not _BUCKET.fullmatch(request.bucket):
        raise InvalidDestinationError(
            f"bucket {request.bucket!r} is not a valid bucket name "
            "(3-63 lowercase letters, digits, '.', '-')"
        )
    if not _REGION.fullmatch(request.region):
        raise InvalidDestinationError(f"region {request.region!r} is not a region name")
    creds = request.credentials
    if not creds.access_key_id.strip() or not creds.secret_access_key.get_secret_value():
        raise InvalidDestinationError("both an access key id and a secret access key are needed")
    return Destination(
        owner=request.owner,
        bucket=request.bucket,
        endpoint_url=endpoint,
        region=request.region,
        prefix=normalize_prefix(request.prefix),
        path_style=request.path_style,
        encrypt=request.encrypt,
        access_key_hint=creds.hint(),
    )


def check_destination(client: S3Client, destination: Destination) -> None:
    """Write, read back and delete a small object; DestinationCheckError says what failed."""
    key = f"{destination.prefix}{destination.owner}/{PROBE_DIRECTORY}/{os.urandom(8).hex()}"
    payload = b"pixflare backup check " + os.urandom(16).hex().encode()
    endpoint = destination.endpoint_url or "AWS S3"
    bucket = destination.bucket
    try:
        with aws_errors("write"):
            client.put_object(Bucket=bucket, Key=key, Body=payload)
        with aws_errors("read"):
            response = client.get_object(Bucket=bucket, Key=key)
            # Bounded: a misbehaving endpoint cannot stream an endless body into us.
            with contextlib.closing(response["Body"]) as stream:
                body = stream.read(len(payload) + 1)
        if body != payload:
            raise DestinationCheckError(
                f"{endpoint} returned different bytes for a test object than were written"
            )
        with aws_errors("delete"):
            client.delete_object(Bucket=bucket, Key=key)
    except DestinationCheckError:
        raise
    except PixflareError as err:
        raise DestinationCheckError(_explain(err, endpoint, bucket)) from None


def _explain(err: PixflareError, endpoint: str, bucket: str) -> str:
    text = str(err)
    step = text.split(":", 1)[0]
    if "NoSuchBucket" in text:
        return f"bucket {bucket!r} does not exist at {endpoint}"
    if isinstance(err, AccessDeniedError):
        if any(code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch")):
            return (
                f"{endpoint} rejected the credentials ({_code(text)}): "
                "check the access key id and secret access key"
            )
        return (
            f"{endpoint} denied the test {step} in bucket {bucket!r} ({_code(text)}): "
            "the key needs permission to put, get and delete objects"
        )
    if isinstance(err, NotFoundError):
        return f"test {step} at {endpoint} failed: {text}"
    if isinstance(err, TransientError) and (
        "connect" in text.lower() or "timeout" in text.lower() or "timed out" in text.lower()
    ):
        return f"cannot reach {endpoint}: {text.split(':', 1)[-1].strip()}"
    return f"test {step} at {endpoint} failed: {text}"


def _code(text: str) -> str:
    # Our error text reads "<step>: <Code> <message>".
    after = text.split(":", 1)[-1].strip()
    return after.split(" ", 1)[0] if after else "refused"


def configure_destination(
    settings: Settings, request: DestinationRequest, *, check: bool = True
) -> Destination:
    """Validate, apply the endpoint policy, check against the real destination, encrypt
    the credentials, save. A refused endpoint (EndpointRefusedError): nothing sent or saved."""
    destination = validate_request(request)
    policy = EndpointPolicy.from_settings(settings)
    if check:
        client = remote_client(destination, request.credentials, policy)  # checks the endpoint
        check_destination(client, destination)
    else:
        check_endpoint(destination, policy)
    repository = DestinationRepository(settings.require("destinations_table"))
    existing = repository.get(request.owner)
    now = iso(utcnow())
    saved = Destination(
        owner=destination.owner,
        bucket=destination.bucket,
        endpoint_url=destination.endpoint_url,
        region=destination.region,
        prefix=destination.prefix,
        path_style=destination.path_style,
        encrypt=destination.encrypt,
        credentials_ciphertext=encrypt_credentials(settings, request.owner, request.credentials),
        access_key_hint=destination.access_key_hint,
        created_at=existing.created_at if existing else now,
        updated_at=now,
    )
    repository.put(saved)
    return saved


def backfill_destination(
    settings: Settings,
    destination: Destination,
    on_round: Callable[[BackfillRound], None] = lambda _r: None,
) -> BackfillRound:
    """Mark and queue every image of the owner not backed up at ``destination``, then
    record that this set's backfill finished (until then the daily sync would finish
    it, should this stop part way)."""
    backfill = Backfill(settings, destination, iso(utcnow()), requeue=True)
    total = backfill.run(on_round)
    DestinationRepository(settings.require("destinations_table")).mark_backfilled(
        destination.owner, destination.updated_at
    )
    return total


def backup_progress(settings: Settings, destination: Destination) -> dict[str, int]:
    """The owner's images by where their backup at ``destination`` stands (the by-owner
    index, a page at a time; soft-deleted images and those without an original left out)."""
    counts: dict[str, int] = dict.fromkeys(PROGRESS_STATES, 0)
    images = ImageRepository(settings.require("images_table"))
    start: dict[str, Any] | None = None
    while True:
        records, start = images.list_for_owner(destination.owner, limit=500, start_key=start)
        for record in records:
            state = progress_state(record, destination)
            if state is not None:
                counts[state] += 1
        if not start:
            return counts
