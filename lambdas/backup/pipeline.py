"""The backup queue's jobs: copy an original to its owner's destination, or remove it there.

upload: stream the original from the images bucket to
``{prefix}{owner}/{album}/{filename}`` at the owner's destination, encrypting it
on the way when the owner asked for that; the plaintext SHA-256 and size go into
the object's metadata and onto the image record, which is marked ``synced``.
delete: remove that object (already gone counts as done) and mark the record
``deleted``. Owners without a destination: nothing to do.

Failures follow lambdas.shared.errors: a missing record or original is permanent
(the record shows ``failed`` and why); an unreachable or failing destination is
transient, and so are refused credentials (the owner fixes them, an operator
redrives the DLQ); the last such error is kept on the record in ``backup.last_error``.
A destination the endpoint policy refuses (lambdas/shared/endpoint_policy.py: a
private or loopback address, plain http) is permanent: the record shows ``failed``
and the reason, nothing is sent there, and the BackupDestinationRefused metric counts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.backup.crypto import SCHEME, Header, encrypt_chunks, new_header
from lambdas.backup.remote import REMOTE_TIMEOUTS, remote_client
from lambdas.backup.transfer import (
    MAX_PARTS_IN_FLIGHT,
    PART_SIZE,
    read_body,
    upload_stream,
)
from lambdas.shared import aws
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.destinations import Destination, DestinationRepository, decrypt_credentials
from lambdas.shared.endpoint_policy import EndpointPolicy, EndpointRefusedError
from lambdas.shared.errors import (
    ConditionFailedError,
    NotFoundError,
    PermanentError,
    PixflareError,
    aws_errors,
)
from lambdas.shared.images import ImageRecord, ImageRepository, backup_state_fields
from lambdas.shared.messages import BackupJob
from lambdas.shared.objects import ImagesBucket
from lambdas.shared.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from lambdas.shared.worker import JobContext

# A part (or the single PUT) is started only with time for it at the destination
# client's single-attempt timeouts (13 s), then, should it be the last, for the
# commit at the destination (its shortest, 6 s) and the record update (the AWS
# client's shortest, 3 s), and the report margin: 23 s. Every call still fails before
# the function's timeout (its timeouts fit the time left, see lambdas.shared.aws);
# this only keeps a part that could not be finished from being begun.
PART_SECONDS = aws.seconds_needed(REMOTE_TIMEOUTS[1], REMOTE_TIMEOUTS[-1], aws.AWS_TIMEOUTS[-1])
LAST_ERROR_LIMIT = 500

META_SHA256 = "pixflare-sha256"
META_SIZE = "pixflare-size"
META_IMAGE_ID = "pixflare-image-id"
META_ENCRYPTION = "pixflare-encryption"
NO_ENCRYPTION = "none"
ENCRYPTED_CONTENT_TYPE = "application/octet-stream"
# Counts destinations refused by the endpoint policy at use (an alarm may watch it).
DESTINATION_REFUSED_METRIC = "BackupDestinationRefused"


class SourceChangedError(PermanentError):
    """The original read back does not match the checksum recorded at upload."""


@dataclass(frozen=True)
class EncryptionKey:
    """A fresh data key for one object and the header that carries it wrapped."""

    data_key: bytes = field(repr=False)
    header: Header


@dataclass(frozen=True)
class SyncedObject:
    key: str
    etag: str
    sha256: str
    size: int
    stored_size: int
    encrypted: bool
    parts: int
    seconds: float


def data_key_context(owner: str, image_id: str) -> dict[str, str]:
    return {"owner": owner, "imageId": image_id}


def new_encryption_key(settings: Settings, owner: str, image_id: str) -> EncryptionKey:
    """A per-object AES-256 key from KMS, bound to the owner and the image."""
    with aws_errors(f"generate data key for {image_id}"):
        response = aws.kms().generate_data_key(
            KeyId=settings.require("backup_kms_key_id"),
            KeySpec="AES_256",
            EncryptionContext=data_key_context(owner, image_id),
        )
    header = new_header(str(response["KeyId"]), bytes(response["CiphertextBlob"]))
    return EncryptionKey(bytes(response["Plaintext"]), header)


def unwrap_data_key(owner: str, image_id: str) -> Callable[[Header], bytes]:
    """The KMS call that turns a header's wrapped key back into the data key."""

    def unwrap(header: Header) -> bytes:
        with aws_errors(f"unwrap data key of {image_id}"):
            response = aws.kms().decrypt(
                CiphertextBlob=header.wrapped_key,
                KeyId=header.key_id,
                EncryptionContext=data_key_context(owner, image_id),
            )
        return bytes(response["Plaintext"])

    return unwrap


class _Digest:
    """SHA-256 and byte count of a stream, taken as it passes through."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def tap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.hash.update(chunk)
            self.size += len(chunk)
            yield chunk


def stream_backup(
    *,
    source: S3Client,
    source_bucket: str,
    source_key: str,
    target: S3Client,
    target_bucket: str,
    target_key: str,
    image_id: str,
    content_type: str,
    expected_sha256: str,
    encryption: EncryptionKey | None,
    check_time: Callable[[], None] = lambda: None,
    part_size: int = PART_SIZE,
    max_in_flight: int = MAX_PARTS_IN_FLIGHT,
) -> SyncedObject:
    """Copy one object from the images bucket to a destination, never holding it whole.

    The object is committed at the destination only if the bytes read hash to
    ``expected_sha256`` (the checksum recorded at upload) and match the length S3
    announced; otherwise the upload is abandoned and SourceChangedError raised.
    """
    started = time.monotonic()
    with aws_errors(f"read original {source_bucket}/{source_key}"):
        response = source.get_object(Bucket=source_bucket, Key=source_key)
    size = int(response["ContentLength"])
    body = response["Body"]
    digest = _Digest()
    plaintext = digest.tap(read_body(body, f"read original {source_key}"))
    metadata = {
        META_SHA256: expected_sha256,
        META_SIZE: str(size),
        META_IMAGE_ID: image_id,
        META_ENCRYPTION: SCHEME if encryption else NO_ENCRYPTION,
    }
    chunks: Iterable[bytes] = plaintext
    if encryption is not None:
        chunks = encrypt_chunks(plaintext, encryption.data_key, encryption.header)

    def before_commit() -> None:
        actual = digest.hash.hexdigest()
        if digest.size != size or actual != expected_sha256:
            raise SourceChangedError(
                f"original {source_key} reads as {digest.size} bytes with SHA-256 {actual}, "
                f"expected {size} bytes with SHA-256 {expected_sha256}"
            )

    try:
        result = upload_stream(
            target,
            bucket=target_bucket,
            key=target_key,
            chunks=chunks,
            metadata=metadata,
            content_type=ENCRYPTED_CONTENT_TYPE if encryption else content_type,
            before_commit=before_commit,
            check_time=check_time,
            part_size=part_size,
            max_in_flight=max_in_flight,
        )
    finally:
        body.close()
    return SyncedObject(
        key=target_key,
        etag=result.etag,
        sha256=expected_sha256,
        size=size,
        stored_size=result.bytes_sent,
        encrypted=encryption is not None,
        parts=result.parts,
        seconds=time.monotonic() - started,
    )


def source_sha256(settings: Settings, record: ImageRecord) -> str:
    """The checksum to hold the copy to: the record's, else one pass over the original."""
    if record.sha256:
        return record.sha256
    digest = hashlib.sha256()
    what = f"read original {record.original_key}"
    body = ImagesBucket(record.bucket).open(record.original_key, what)
    try:
        for chunk in read_body(body, what):
            digest.update(chunk)
    finally:
        body.close()
    return digest.hexdigest()


# -- the queue jobs -----------------------------------------------------------------------


def process_backup(job: BackupJob, ctx: JobContext) -> None:
    settings = ctx.settings
    destination = DestinationRepository(settings.require("destinations_table")).get(job.owner)
    if destination is None:
        logger.info("owner has no backup destination; nothing to do", extra={"outcome": "skipped"})
        return
    images = ImageRepository(settings.require("images_table"))
    if job.action == "upload":
        upload_original(settings, images, destination, job, ctx)
    else:
        delete_backup(settings, images, destination, job)


def upload_original(
    settings: Settings,
    images: ImageRepository,
    destination: Destination,
    job: BackupJob,
    ctx: JobContext,
) -> SyncedObject | None:
    record = images.get(job.image_id)
    if record is None:
        raise NotFoundError(f"image {job.image_id} has no record; nothing to back up")
    if record.owner != job.owner:
        raise PermanentError(f"image {job.image_id} belongs to another owner than the job says")
    if record.backup_status == "deleted":
        logger.info("backup already deleted; upload skipped", extra={"outcome": "skipped"})
        return None
    target_key = destination.object_key(record.owner, record.album, record.filename)

    def check_time() -> None:
        ctx.deadline.require(PART_SECONDS, "another backup part")

    try:
        expected = source_sha256(settings, record)
        target = remote_client(
            destination, decrypt_credentials(destination), EndpointPolicy.from_settings(settings)
        )
        encryption = (
            new_encryption_key(settings, record.owner, record.image_id)
            if destination.encrypt
            else None
        )
        synced = stream_backup(
            source=aws.s3(),
            source_bucket=record.bucket,
            source_key=record.original_key,
            target=target,
            target_bucket=destination.bucket,
            target_key=target_key,
            image_id=record.image_id,
            content_type=record.content_type,
            expected_sha256=expected,
            encryption=encryption,
            check_time=check_time,
        )
    except PermanentError:
        raise
    except PixflareError as err:
        _record_last_error(images, record, err)
        raise
    _mark_synced(images, record, destination, synced, target)
    return synced


def _mark_synced(
    images: ImageRepository,
    record: ImageRecord,
    destination: Destination,
    synced: SyncedObject,
    target: S3Client,
) -> None:
    now = iso(utcnow())
    fields, remove = backup_state_fields(record.owner, "synced", now)
    fields["backup"] = {
        "synced_at": now,
        "key": synced.key,
        "bucket": destination.bucket,
        "endpoint": destination.endpoint_url,
        "etag": synced.etag,
        "sha256": synced.sha256,
        "bytes": synced.size,
        "stored_bytes": synced.stored_size,
        "encrypted": synced.encrypted,
        "encryption": SCHEME if synced.encrypted else NO_ENCRYPTION,
    }
    try:
        images.update_backup(record.image_id, fields, remove)
    except ConditionFailedError:
        # The image went away (or its backup was deleted) while we copied: don't leave
        # an object behind that no record points to.
        _delete_remote(target, destination.bucket, synced.key)
        logger.info("image deleted during backup; copy removed", extra={"outcome": "skipped"})
        return
    logger.info(
        "backup synced",
        extra={
            "outcome": "synced",
            "key": synced.key,
            "bytes": synced.size,
            "encrypted": synced.encrypted,
            "parts": synced.parts,
            "seconds": round(synced.seconds, 3),
        },
    )


def delete_backup(
    settings: Settings, images: ImageRepository, destination: Destination, job: BackupJob
) -> None:
    # The message carries album and filename: the record may be gone already.
    assert job.album is not None and job.filename is not None  # enforced by BackupJob
    key = destination.object_key(job.owner, job.album, job.filename)
    target = remote_client(
        destination, decrypt_credentials(destination), EndpointPolicy.from_settings(settings)
    )
    record = images.get(job.image_id)
    if record is not None and record.owner != job.owner:
        record = None  # a job naming another owner's image must not touch that image
    try:
        _delete_remote(target, destination.bucket, key, quiet=False)
    except PermanentError:
        raise
    except PixflareError as err:
        if record is not None:
            _record_last_error(images, record, err)
        raise
    if record is not None:
        fields, remove = backup_state_fields(job.owner, "deleted", iso(utcnow()))
        fields["backup"] = {**record.backup, "deleted_at": iso(utcnow()), "key": key}
        fields["backup"].pop("last_error", None)
        # The record may have gone meanwhile: then there is nothing left to mark.
        with contextlib.suppress(ConditionFailedError):
            images.update(job.image_id, fields, remove)
    logger.info("backup deleted", extra={"outcome": "deleted", "key": key})


def _delete_remote(target: S3Client, bucket: str, key: str, *, quiet: bool = True) -> None:
    try:
        with aws_errors(f"delete destination {bucket}/{key}"):
            target.delete_object(Bucket=bucket, Key=key)
    except NotFoundError:
        return  # no such bucket means no such object: already gone
    except PixflareError:
        if not quiet:
            raise


def _record_last_error(images: ImageRepository, record: ImageRecord, err: Exception) -> None:
    """Keep the latest retryable failure on the record, for `pixflare status` (best effort)."""
    now = iso(utcnow())
    backup = {
        **record.backup,
        "last_error": f"{type(err).__name__}: {err}"[:LAST_ERROR_LIMIT],
        "last_error_at": now,
    }
    try:
        images.update_backup(record.image_id, {"backup": backup})
    except Exception as update_err:  # the job's own error is the one that matters
        logger.warning("could not record backup error", extra={"reason": str(update_err)})


def record_permanent_failure(job: BackupJob, err: PermanentError, ctx: JobContext) -> None:
    """The worker's hook: an upload that can never succeed as asked marks the image failed."""
    if isinstance(err, EndpointRefusedError):
        # (the worker logs the reason with "job failed permanently")
        metrics.add_metric(name=DESTINATION_REFUSED_METRIC, unit=MetricUnit.Count, value=1)
    images = ImageRepository(ctx.settings.require("images_table"))
    now = iso(utcnow())
    reason = f"{type(err).__name__}: {err}"[:LAST_ERROR_LIMIT]
    record = images.get(job.image_id)
    if record is None or record.owner != job.owner:
        return  # a job naming another owner's image must not touch that image
    if job.action == "delete":
        _record_last_error(images, record, err)
        return
    fields, remove = backup_state_fields(record.owner, "failed", now)
    fields["backup"] = {**record.backup, "last_error": reason, "last_error_at": now}
    with contextlib.suppress(ConditionFailedError):
        images.update_backup(job.image_id, fields, remove)
