"""What each route does, given the settings and the authenticated owner.

No HTTP here: the handler turns requests into these calls and their results (or
errors, see lambdas.api.errors) into responses. Presigning is local computation
with the function's own credentials (SigV4, the bucket's regional endpoint); the
only network calls are DynamoDB's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lambdas.api.cursor import InvalidCursorError, decode_cursor, encode_cursor
from lambdas.api.errors import BadRequest, ImageNotFound, Unauthorized
from lambdas.api.inputs import UploadRequest
from lambdas.shared import aws, clock, originals
from lambdas.shared.api_keys import ApiKeyRepository, bearer_key
from lambdas.shared.config import Settings
from lambdas.shared.errors import TransientError, aws_errors
from lambdas.shared.images import MAX_UPLOAD_BYTES, ImageRecord, ImageRepository
from lambdas.shared.keys import IMAGE_ID, validate_segment

# How long a presigned POST may be used (never longer than the reservation it fills).
PRESIGNED_POST_SECONDS = 300
# How long a variant's presigned GET works: a page shows it, then asks again.
PRESIGNED_GET_SECONDS = 900
# A presigned POST shorter than this is not worth handing out.
MIN_POST_SECONDS = 30


def authenticate(settings: Settings, authorization: str | None) -> str:
    """The owner of the request's bearer key; Unauthorized without a valid one."""
    key = bearer_key(authorization)
    if key is None:
        raise Unauthorized()
    owner = ApiKeyRepository(settings.require("api_keys_table")).authenticate(key)
    if owner is None:
        raise Unauthorized()
    return owner


# -- POST /v1/uploads ---------------------------------------------------------------------
def create_upload(settings: Settings, owner: str, request: UploadRequest) -> dict[str, Any]:
    """Reserve the name (originals.reserve_upload) and presign the original's POST."""
    record = originals.reserve_upload(
        settings,
        owner=owner,
        album=request.album,
        filename=request.filename,
        content_type=request.contentType,
        size=request.size,
    )
    expires_in = post_expiry_seconds(record.upload_expires_at, clock.utcnow())
    return {
        "imageId": record.image_id,
        "upload": presign_upload(record, expires_in=expires_in),
        "statusUrl": status_path(record.image_id),
    }


def status_path(image_id: str) -> str:
    return f"/v1/images/{image_id}"


def post_expiry_seconds(reservation_expires_at: str | None, now: datetime) -> int:
    """PRESIGNED_POST_SECONDS, cut to what is left of the reservation."""
    if not reservation_expires_at:
        return PRESIGNED_POST_SECONDS
    left = (datetime.fromisoformat(reservation_expires_at) - now).total_seconds()
    if left < MIN_POST_SECONDS:
        # A reservation made a moment ago cannot be this short: the clock is off.
        raise TransientError(f"upload reservation ends in {left:.0f} s; not presigning")
    return min(PRESIGNED_POST_SECONDS, int(left))


def upload_conditions(record: ImageRecord) -> list[Any]:
    """The POST policy's conditions: this key, 1 byte to the upload limit, the declared
    type, this image's id (boto3 adds the bucket; the expiry is the policy's own)."""
    return [
        ["eq", "$key", record.original_key],
        ["content-length-range", 1, MAX_UPLOAD_BYTES],
        ["eq", "$Content-Type", record.content_type],
        ["eq", "$x-amz-meta-image-id", record.image_id],
    ]


def presign_upload(record: ImageRecord, *, expires_in: int) -> dict[str, Any]:
    """``{"url", "fields"}`` of a presigned POST for the record's original."""
    with aws_errors(f"presign the upload of image {record.image_id}"):
        post = aws.s3_presigner().generate_presigned_post(
            Bucket=record.bucket,
            Key=record.original_key,
            Fields={"Content-Type": record.content_type, "x-amz-meta-image-id": record.image_id},
            Conditions=upload_conditions(record),
            ExpiresIn=expires_in,
        )
    return {"url": post["url"], "fields": dict(post["fields"])}


# -- GET /v1/images/{id} ------------------------------------------------------------------
def image_status(settings: Settings, owner: str, image_id: str) -> dict[str, Any]:
    """The owner's live image as a status document; ImageNotFound for anything else."""
    if not IMAGE_ID.fullmatch(image_id):
        raise ImageNotFound()
    record = ImageRepository(settings.require("images_table")).get(image_id)
    if record is None or record.owner != owner or record.deleted_at is not None:
        raise ImageNotFound()
    return status_document(record)


def status_document(record: ImageRecord) -> dict[str, Any]:
    """``record.to_status()``, each variant with a presigned GET ``url``."""
    document = record.to_status()
    for entry in document["variants"].values():
        entry["url"] = presign_get(record.bucket, str(entry["key"]))
    return document


def presign_get(bucket: str, key: str) -> str:
    with aws_errors(f"presign a GET of {key}"):
        return aws.s3_presigner().generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=PRESIGNED_GET_SECONDS,
        )


# -- GET /v1/images -----------------------------------------------------------------------
def list_images(
    settings: Settings, owner: str, *, album: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """A page of the owner's live images, newest first: ``{"items", "next"}``."""
    if album is not None:
        validate_segment("album", album)
    start_key = None
    if cursor is not None:
        try:
            start_key = decode_cursor(cursor, owner=owner, album=album)
        except InvalidCursorError:
            raise BadRequest("invalid cursor") from None
    records, last_key = ImageRepository(settings.require("images_table")).list_for_owner(
        owner, album=album, limit=limit, start_key=start_key
    )
    return {
        "items": [status_document(record) for record in records],
        "next": encode_cursor(last_key) if last_key else None,
    }
