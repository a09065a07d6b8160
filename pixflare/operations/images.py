"""Finding, listing, undeleting and purging images: what ``pixflare list``, ``restore``,
``delete --purge`` and every command taking an IMAGE_ID call.

Ids: a full id (32 hex) is taken as it is; a prefix of at least ID_PREFIX_CHARS is
looked up in its prefix item (written with the record; records made before those
items existed are found by their full id, or with ``pixflare list``). Nothing scans.

Purge removes an image as the daily cleanup does (lambdas/cron/cleanup.py), except
that its backup is deleted at once through the backup worker's own code rather than
queued: the name is free the moment purge returns, and a queued delete could land
after a new upload under that name had been backed up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lambdas.api.cursor import InvalidCursorError, decode_cursor, encode_cursor
from lambdas.backup.pipeline import delete_backup
from lambdas.cron.cleanup import backup_delete_jobs, delete_image_objects
from lambdas.shared.config import Settings
from lambdas.shared.destinations import DestinationRepository
from lambdas.shared.errors import ConditionFailedError, NotFoundError, PermanentError
from lambdas.shared.images import ID_PREFIX_CHARS, ImageRecord, ImageRepository
from lambdas.shared.keys import IMAGE_ID, validate_segment
from lambdas.shared.producers import enqueue_variant_job

FULL_ID_CHARS = 32
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
# Reads of one page at most: soft-deleted images are filtered after each read, so a
# run of them could otherwise keep a page reading on (the next page starts there).
MAX_LIST_READS = 10


class ImageIdError(PermanentError):
    """Not an image id or prefix, an unknown prefix, or one naming several images."""


class RestoreRefusedError(PermanentError):
    """The image is not soft-deleted (or is gone)."""


class InvalidListCursorError(PermanentError):
    """A --cursor that ``pixflare list`` did not print for this owner and album."""


# -- ids --------------------------------------------------------------------------------
def check_id_text(value: str) -> str:
    """The id or prefix in lowercase if it has the right shape; ImageIdError otherwise.
    Needs no AWS call, so a malformed id fails before any is made."""
    text = value.strip().lower()
    if not text or len(text) > FULL_ID_CHARS or any(c not in "0123456789abcdef" for c in text):
        raise ImageIdError(
            f"{value!r} is not an image id (32 lowercase hex characters, "
            f"or a unique prefix of at least {ID_PREFIX_CHARS})"
        )
    if len(text) < ID_PREFIX_CHARS:
        raise ImageIdError(
            f"image id prefix {text} is too short: give at least {ID_PREFIX_CHARS} "
            f"characters (a full id has {FULL_ID_CHARS})"
        )
    return text


def resolve_image_id(value: str, images: Callable[[], ImageRepository]) -> str:
    """The full id ``value`` stands for: itself when it is one, else the one image whose
    id starts with it. ``images`` is called only for a prefix."""
    text = check_id_text(value)
    if IMAGE_ID.fullmatch(text):
        return text
    repository = images()
    candidates = repository.ids_with_prefix(text)
    if len(candidates) == 1:
        return candidates[0]
    # Several (or a stale entry): only ids whose record exists count.
    records = sorted(repository.get_many(candidates), key=lambda r: r.image_id)
    if len(records) == 1:
        return records[0].image_id
    if not records:
        raise ImageIdError(
            f"no image id starts with {text} (images uploaded before this version are "
            "found by their full id, or with `pixflare list --owner OWNER`)"
        )
    matches = ", ".join(f"{r.image_id} ({r.owner}/{r.album}/{r.filename})" for r in records)
    raise ImageIdError(f"image id prefix {text} is ambiguous: {matches}; give more characters")


# -- list -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImagePage:
    records: list[ImageRecord]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": [record.to_status() for record in self.records],
            "nextCursor": self.next_cursor,
        }


def list_images(
    settings: Settings,
    owner: str,
    *,
    album: str | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
    cursor: str | None = None,
) -> ImagePage:
    """Up to ``limit`` of the owner's live images (of one album), newest first, from the
    by-owner / by-album index, and the cursor of the next page (None on the last).

    One image more than asked is read, so the cursor is only given when something
    follows; pages that the deleted-image filter left short are read on.
    """
    validate_segment("owner", owner)
    if album is not None:
        validate_segment("album", album)
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise PermanentError(f"--limit must be 1 to {MAX_LIST_LIMIT}")
    start_key: dict[str, Any] | None = None
    if cursor is not None:
        try:
            start_key = decode_cursor(cursor, owner=owner, album=album)
        except InvalidCursorError as err:
            raise InvalidListCursorError(
                f"--cursor is not one `pixflare list` printed for this --owner and --album ({err})"
            ) from None
    images = ImageRepository(settings.require("images_table"))
    records: list[ImageRecord] = []
    for _ in range(MAX_LIST_READS):
        page, start_key = images.list_for_owner(
            owner, album=album, limit=limit + 1 - len(records), start_key=start_key
        )
        records.extend(page)
        if start_key is None or len(records) > limit:
            break
    else:
        # Mostly deleted images so far: a shorter page, and the cursor where reading stopped.
        if start_key is not None and len(records) <= limit:
            return ImagePage(records, encode_cursor(start_key))
    if len(records) <= limit:
        return ImagePage(records, None)
    shown = records[:limit]
    return ImagePage(shown, encode_cursor(images.listing_key(shown[-1], album=album)))


# -- restore ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Restored:
    record: ImageRecord
    variant_message_id: str | None


def restore_image(settings: Settings, image_id: str) -> Restored:
    """Undelete a soft-deleted image. A variant job dropped while it was deleted (the
    variant step skips deleted images) is queued again; everything else is as it was."""
    images = ImageRepository(settings.require("images_table"))
    try:
        record = images.restore(image_id)
    except ConditionFailedError:
        if images.get(image_id) is None:
            raise RestoreRefusedError(
                f"no image {image_id}: it was purged (or never existed), nothing to restore"
            ) from None
        raise RestoreRefusedError(f"image {image_id} is not deleted; nothing to restore") from None
    assert record is not None  # return_new
    message = None
    if record.variants_status == "pending" and record.upload_status == "received":
        message = enqueue_variant_job(settings, image_id=record.image_id, owner=record.owner)
    return Restored(record, message)


# -- purge --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Purged:
    record: ImageRecord
    was: Literal["deleted", "live"]
    objects_deleted: int
    backup_deleted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "imageId": self.record.image_id,
            "owner": self.record.owner,
            "album": self.record.album,
            "filename": self.record.filename,
            "was": self.was,
            "objectsDeleted": self.objects_deleted,
            "backupDeleted": self.backup_deleted,
            "purged": True,
        }


def purge_target(settings: Settings, image_id: str) -> ImageRecord:
    """The record purge would remove (for the confirmation); NotFoundError if none."""
    record = ImageRepository(settings.require("images_table")).get(image_id)
    if record is None:
        raise NotFoundError(f"no image {image_id}")
    return record


def purge_image(settings: Settings, record: ImageRecord) -> Purged:
    """Remove the image for good, live or soft-deleted: its backup at the owner's
    destination (if one may exist), its objects, then its record, path claim and id
    prefix entry. A failure leaves the record, so purging again finishes the job."""
    images = ImageRepository(settings.require("images_table"))
    backup_deleted = False
    destinations = (
        DestinationRepository(settings.destinations_table) if settings.destinations_table else None
    )
    destination = destinations.get(record.owner) if destinations else None
    if destination is not None:
        for job in backup_delete_jobs([record], {record.owner}):
            delete_backup(settings, images, destination, job)
            backup_deleted = True
    objects_deleted = delete_image_objects([record], settings.require("images_bucket"))
    images.delete(record)
    return Purged(
        record,
        "deleted" if record.deleted_at else "live",
        objects_deleted,
        backup_deleted,
    )
