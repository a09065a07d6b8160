"""What Pixflare's upload endpoint does: store the original, write the record, queue the jobs.

Order matters so that nothing is left half-done: the record (with its path claim)
is written first, so a taken name never overwrites another image's original; if
storing the object or queueing the variant job fails, both are rolled back.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass

from lambdas.shared import aws
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.destinations import destination_exists
from lambdas.shared.errors import PermanentError, aws_errors
from lambdas.shared.images import (
    MAX_UPLOAD_BYTES,
    ImageRecord,
    ImageRepository,
    backup_state_fields,
)
from lambdas.shared.keys import ImagePath
from lambdas.shared.producers import enqueue_backup_job, enqueue_variant_job

ORIGINAL_CACHE_CONTROL = "private, max-age=31536000, immutable"

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


class UploadRejected(PermanentError):  # noqa: N818 - reads as what happened to the upload
    """The upload itself is unacceptable (empty, too large, a bad name)."""


def sniff_content_type(data: bytes) -> str:
    """Content type from the file's first bytes; the variant step decides if it really decodes."""
    for signature, offset, content_type in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return content_type
    return "application/octet-stream"


@dataclass(frozen=True)
class UploadResult:
    record: ImageRecord
    variant_message_id: str | None
    backup_message_id: str | None


def store_upload(
    settings: Settings, data: bytes, *, owner: str, album: str, filename: str
) -> UploadResult:
    path = ImagePath(owner, album, filename)  # validates every segment first
    if not data:
        raise UploadRejected("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRejected(f"the file is {len(data)} bytes, over the {MAX_UPLOAD_BYTES} limit")
    bucket = settings.require("images_bucket")
    images = ImageRepository(settings.require("images_table"))
    now = iso(utcnow())
    backing_up = settings.enable_queues and destination_exists(settings, owner)
    record = ImageRecord(
        image_id=uuid.uuid4().hex,
        owner=owner,
        album=album,
        filename=filename,
        bucket=bucket,
        original_key=path.original_key,
        content_type=sniff_content_type(data),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=now,
        updated_at=now,
        # With queues off, an image keeps only its original and is as ready as it will get.
        variants_status="pending" if settings.enable_queues else "ready",
        backup_status="pending" if backing_up else "none",
    )
    extra, _ = backup_state_fields(owner, record.backup_status, now)
    extra.pop("backup_status")
    images.create(record, extra=extra)
    try:
        with aws_errors(f"store original {path.original_key}"):
            response = aws.s3().put_object(
                Bucket=bucket,
                Key=path.original_key,
                Body=data,
                ContentType=record.content_type,
                CacheControl=ORIGINAL_CACHE_CONTROL,
                Metadata={"image-id": record.image_id, "sha256": record.sha256},
            )
        etag = str(response.get("ETag", "")).strip('"')
        images.update(record.image_id, {"original_etag": etag})
        record = record.model_copy(update={"original_etag": etag})
        variant_message = enqueue_variant_job(settings, image_id=record.image_id, owner=owner)
    except Exception:
        _roll_back(bucket, images, record)
        raise
    backup_message = None
    if backing_up:
        # The image is stored; a failed backup enqueue leaves it `pending`, and the
        # daily backup sync queues pending images, so nothing is lost.
        try:
            backup_message = enqueue_backup_job(
                settings,
                image_id=record.image_id,
                owner=owner,
                action="upload",
                requested_at=now,
            )
        except PermanentError:
            raise
        except Exception:
            backup_message = None
    return UploadResult(record, variant_message, backup_message)


def _roll_back(bucket: str, images: ImageRepository, record: ImageRecord) -> None:
    # Each step on its own: an original left behind is an orphan the daily cleanup
    # removes, but a record left behind would hold the name with no image.
    with contextlib.suppress(Exception), aws_errors("roll back upload"):
        aws.s3().delete_object(Bucket=bucket, Key=record.original_key)
    with contextlib.suppress(Exception):
        images.delete(record)
