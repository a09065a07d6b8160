"""Originals: how an image comes in, the one code path for every producer.

Two producers store originals: ``pixflare upload`` (with the operator's credentials)
and anything else that writes ``{owner}/{album}/{filename}/original`` into the
bucket (a browser's presigned POST from the HTTP API, ``aws s3 sync``, a script). S3
tells the ingest function about every one of them; ``pixflare upload`` also calls
:func:`ingest_original` itself, so its ``--wait`` does not depend on the event. Both
run the same steps, so they cannot drift:

1. :func:`reserve_upload` (the API and the command; optional for anything else)
   claims the name and writes a record that is waiting for its original.
2. The original lands in S3, its image id in the object's metadata.
3. :func:`ingest_original` reads the object's first bytes and checks them (size,
   magic bytes). A refused file is recorded with its reason and its object removed.
   Otherwise the record is created if there is none, marked as describing this
   object (its ETag), and the variant (and backup) jobs are queued. A replaced
   original (a new ETag under a known name) starts over; the same ETag again does
   nothing, so the event and the command's own call may both run, in any order.

No step here decodes the image: whether it really is one is the variant step's
verdict (a file that passes the magic bytes and then fails to decode is marked
failed there, with its reason).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from lambdas.shared import aws
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.destinations import destination_exists
from lambdas.shared.errors import NotFoundError, PermanentError, aws_errors
from lambdas.shared.images import (
    MAX_UPLOAD_BYTES,
    ImageRecord,
    ImageRepository,
    NameTakenError,
    backup_state_fields,
    iso_seconds,
    purge_due_at,
)
from lambdas.shared.keys import IMAGE_ID, ORIGINAL, ImagePath, InvalidNameError, parse_key
from lambdas.shared.objects import ImagesBucket, ObjectHead
from lambdas.shared.producers import enqueue_backup_job, enqueue_variant_job

# How a record's error starts when its original was refused at ingest (and removed):
# there is nothing to render or back up (lambdas/cron/backup_sync.py reads it).
REFUSED_ERROR_PREFIX = "refused:"

ORIGINAL_CACHE_CONTROL = "private, max-age=31536000, immutable"
# Object metadata (x-amz-meta-image-id) naming the record an original belongs to.
IMAGE_ID_METADATA = "image-id"
SHA256_METADATA = "sha256"
# How long a reservation holds its name for an upload that has not arrived; the
# API's presigned POST expires well before it.
UPLOAD_WINDOW_SECONDS = 900
# Enough of the file for every signature below.
HEAD_BYTES = 64

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"ftypavif", 4, "image/avif"),
    (b"ftypheic", 4, "image/heic"),
    (b"ftypheix", 4, "image/heic"),
    (b"ftypmif1", 4, "image/heif"),
    (b"ftypmsf1", 4, "image/heif"),
)
ACCEPTED_CONTENT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(ct for _, _, ct in _SIGNATURES))


class OriginalRefused(PermanentError):  # noqa: N818 - reads as what happened to the file
    """The file is not accepted as an original (empty, too large, not an image)."""


# The name the upload command's callers know it by.
UploadRejected = OriginalRefused


def sniff_content_type(head: bytes) -> str | None:
    """The image type the file's first bytes announce, or None."""
    for signature, offset, content_type in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return content_type
    return None


def check_size(size: int) -> None:
    if size <= 0:
        raise OriginalRefused("the file is empty")
    if size > MAX_UPLOAD_BYTES:
        raise OriginalRefused(f"the file is {size} bytes, over the {MAX_UPLOAD_BYTES} byte limit")


def check_declared(*, content_type: str, size: int) -> None:
    """What a client says it will upload, checked before any name is claimed."""
    check_size(size)
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise OriginalRefused(
            f"content type {content_type!r} is not accepted; "
            f"images only: {', '.join(ACCEPTED_CONTENT_TYPES)}"
        )


def check_original(head: bytes, size: int) -> str:
    """The file's content type from its size and first bytes, or OriginalRefused."""
    check_size(size)
    content_type = sniff_content_type(head)
    if content_type is None:
        raise OriginalRefused(
            "not an image: its first bytes match none of JPEG, PNG, GIF, WebP, AVIF, HEIC"
        )
    return content_type


# -- reserving a name -----------------------------------------------------------------
def new_record(
    settings: Settings,
    path: ImagePath,
    *,
    image_id: str,
    now: str,
    content_type: str = "application/octet-stream",
    upload_expires_at: str | None = None,
) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        owner=path.owner,
        album=path.album,
        filename=path.filename,
        bucket=settings.require("images_bucket"),
        original_key=path.original_key,
        content_type=content_type,
        created_at=now,
        updated_at=now,
        variants_status="pending",
        upload_expires_at=upload_expires_at,
    )


def reserve_upload(
    settings: Settings, *, owner: str, album: str, filename: str, content_type: str, size: int
) -> ImageRecord:
    """Claim the name for an upload to come: a record waiting for its original.

    NameTakenError when an image (or an upload still within its window) has the name;
    a reservation whose upload never came is taken over.
    """
    path = ImagePath(owner, album, filename)  # validates every segment first
    check_declared(content_type=content_type, size=size)
    images = ImageRepository(settings.require("images_table"))
    now = utcnow()
    record = new_record(
        settings,
        path,
        image_id=uuid.uuid4().hex,
        now=iso(now),
        content_type=content_type,
        upload_expires_at=iso(now + timedelta(seconds=UPLOAD_WINDOW_SECONDS)),
    )
    try:
        images.create(record)
    except NameTakenError as taken:
        holder = _record_for_path(images, path)
        if holder is not None and holder.deleted_at:
            raise NameTakenError(
                deleted_name_message(path, holder, settings.soft_delete_retention_days)
            ) from None
        if holder is None or not images.delete_expired_reservation(holder, iso(now)):
            raise taken
        images.create(record)
    return record


def deleted_name_message(path: ImagePath, holder: ImageRecord, retention_days: int) -> str:
    """Why a soft-deleted image's name is still taken, until when, and the way out."""
    assert holder.deleted_at is not None
    due = iso_seconds(purge_due_at(holder.deleted_at, retention_days))
    return (
        f"{path.claim} belongs to a deleted image ({holder.image_id}) until the first daily "
        f"cleanup after {due} removes it: `pixflare restore {holder.image_id}` undeletes it, "
        f"`pixflare delete {holder.image_id} --purge` frees the name now; "
        "or choose another name or album"
    )


def _record_for_path(images: ImageRepository, path: ImagePath) -> ImageRecord | None:
    image_id = images.claimed_paths([path]).get(path.claim)
    return images.get(image_id) if image_id else None


# -- ingesting an original ------------------------------------------------------------
@dataclass(frozen=True)
class IngestOutcome:
    status: Literal["ingested", "already-ingested", "refused", "ignored"]
    image_id: str | None
    reason: str | None = None
    variant_message_id: str | None = None
    backup_message_id: str | None = None
    record: ImageRecord | None = None


def ingest_original(
    settings: Settings,
    *,
    bucket: str,
    key: str,
    sha256: str | None = None,
    stored: ObjectHead | None = None,
) -> IngestOutcome:
    """Check, record and queue the original stored at ``key`` (see the module doc).

    ``sha256``: the file's checksum when the caller read the whole file (the upload
    command); otherwise the backup step computes it when it copies the file.
    ``stored``: what the caller that just wrote the object knows of it (its first
    bytes, ETag, size, metadata), so S3 is not asked again.
    """
    objects = ImagesBucket(bucket)
    try:
        path, leaf = parse_key(key)
        if leaf != ORIGINAL:
            raise InvalidNameError(f"not an original: {key!r}")
    except InvalidNameError as err:
        # Under the originals' layout but no image's name: nothing can ever show it.
        objects.delete([key])
        return IngestOutcome("refused", None, f"{err}; the object was removed")
    try:
        found = stored or objects.head(key, nbytes=HEAD_BYTES)
    except NotFoundError:
        # Replaced-then-deleted, or rolled back by its uploader: nothing to ingest.
        return IngestOutcome("ignored", None, f"{key} is gone")

    images = ImageRepository(settings.require("images_table"))
    record = _record_for_path(images, path) or _create_for_object(settings, images, path, found)
    if record.deleted_at:
        return IngestOutcome(
            "ignored", record.image_id, "the name belongs to a deleted image", record=record
        )
    if record.ingested_etag == found.etag:
        return IngestOutcome("already-ingested", record.image_id, record=record)

    now = iso(utcnow())
    try:
        content_type = check_original(found.head, found.size)
    except OriginalRefused as refused:
        reason = str(refused)
        images.update_unless_deleted(
            record.image_id,
            {
                "variants_status": "failed",
                "error": f"{REFUSED_ERROR_PREFIX} {reason}",
                "original_etag": found.etag,
                "ingested_etag": found.etag,
                "bytes": found.size,
            },
            ["upload_expires_at"],
        )
        objects.delete([key])
        return IngestOutcome("refused", record.image_id, reason, record=record)

    backing_up = settings.enable_queues and destination_exists(settings, path.owner)
    fields: dict[str, Any] = {
        "original_etag": found.etag,
        "content_type": content_type,
        "bytes": found.size,
        "sha256": sha256 or "",
        # With queues off an image keeps only its original, as ready as it will get.
        "variants_status": "pending" if settings.enable_queues else "ready",
    }
    removed = ["upload_expires_at", "error"]
    if record.original_etag and record.original_etag != found.etag:
        # A replaced original: its variants are rendered again.
        fields["variants_ready"] = []
        fields["variants"] = {}
    if backing_up:
        backup_fields, backup_removed = backup_state_fields(path.owner, "pending", now)
        fields.update(backup_fields)
        removed.extend(backup_removed)
    updated = images.update_unless_deleted(record.image_id, fields, removed, return_new=True)
    record = updated if updated is not None else record
    variant_message = enqueue_variant_job(settings, image_id=record.image_id, owner=path.owner)
    backup_message = None
    if backing_up:
        # A failed backup enqueue leaves the image `pending`; the daily backup sync
        # queues pending images, so nothing is lost.
        with contextlib.suppress(Exception):
            backup_message = enqueue_backup_job(
                settings,
                image_id=record.image_id,
                owner=path.owner,
                action="upload",
                requested_at=now,
            )
    # Last: a failure before this point leaves the object un-ingested, and the retry
    # queues its jobs again (duplicates are harmless: every job is idempotent).
    images.update_unless_deleted(record.image_id, {"ingested_etag": found.etag})
    record = record.model_copy(update={"ingested_etag": found.etag})
    return IngestOutcome(
        "ingested",
        record.image_id,
        variant_message_id=variant_message,
        backup_message_id=backup_message,
        record=record,
    )


def _create_for_object(
    settings: Settings, images: ImageRepository, path: ImagePath, found: ObjectHead
) -> ImageRecord:
    """The record for an original that arrived without one (``aws s3 sync``, say)."""
    wanted = found.metadata.get(IMAGE_ID_METADATA, "")
    # The same object always gets the same id, so a retry or a second delivery
    # converges on one record.
    derived = hashlib.sha256(f"{path.original_key}\n{found.etag}".encode()).hexdigest()[:32]
    candidates = [wanted] if IMAGE_ID.fullmatch(wanted) else []
    candidates.append(derived)
    now = iso(utcnow())
    for image_id in candidates:
        record = new_record(settings, path, image_id=image_id, now=now)
        try:
            images.create(record)
            return record
        except NameTakenError:
            # Someone (the uploader's own ingest) claimed the name meanwhile: theirs.
            existing = _record_for_path(images, path)
            if existing is not None:
                return existing
            # Otherwise the id itself was in use: try the next candidate.
    raise NameTakenError(f"{path.claim}: no free image id for this original")


# -- the upload command ---------------------------------------------------------------
@dataclass(frozen=True)
class UploadResult:
    record: ImageRecord
    variant_message_id: str | None
    backup_message_id: str | None


def store_upload(
    settings: Settings, data: bytes, *, owner: str, album: str, filename: str
) -> UploadResult:
    """``pixflare upload``: reserve the name, store the original, ingest it.

    Checked before anything is written, so a refused file leaves nothing behind; if
    storing or ingesting fails, the object and the reservation are rolled back.
    """
    path = ImagePath(owner, album, filename)
    content_type = check_original(data[:HEAD_BYTES], len(data))
    reserved = reserve_upload(
        settings,
        owner=owner,
        album=album,
        filename=filename,
        content_type=content_type,
        size=len(data),
    )
    bucket = reserved.bucket
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        metadata = {IMAGE_ID_METADATA: reserved.image_id, SHA256_METADATA: sha256}
        with aws_errors(f"store original {path.original_key}"):
            response = aws.s3().put_object(
                Bucket=bucket,
                Key=path.original_key,
                Body=data,
                ContentType=content_type,
                CacheControl=ORIGINAL_CACHE_CONTROL,
                Metadata=metadata,
            )
        stored = ObjectHead(
            head=data[:HEAD_BYTES],
            etag=str(response.get("ETag", "")).strip('"'),
            size=len(data),
            content_type=content_type,
            metadata=metadata,
        )
        outcome = ingest_original(
            settings, bucket=bucket, key=path.original_key, sha256=sha256, stored=stored
        )
    except Exception:
        _roll_back(bucket, ImageRepository(settings.require("images_table")), reserved)
        raise
    if outcome.record is None or outcome.status not in ("ingested", "already-ingested"):
        raise OriginalRefused(outcome.reason or f"{path.claim} was not ingested")
    return UploadResult(outcome.record, outcome.variant_message_id, outcome.backup_message_id)


def _roll_back(bucket: str, images: ImageRepository, record: ImageRecord) -> None:
    # Each step on its own: an original left behind is an orphan the daily cleanup
    # removes, but a record left behind would hold the name with no image.
    with contextlib.suppress(Exception):
        ImagesBucket(bucket).delete([record.original_key])
    with contextlib.suppress(Exception), aws_errors("roll back upload"):
        images.delete(record)
