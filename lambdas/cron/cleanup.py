"""Cleanup (01:00 UTC): delete expired soft-deletes, then remove orphaned objects.

Phase ``expired``: images soft-deleted more than SOFT_DELETE_RETENTION_DAYS
before ``now``, found through the sparse by-deleted index a page at a time. For
each page, in this order, every step idempotent:

1. every object of every image (DeleteObjects, up to 1000 keys a call, across images);
2. a backup delete for images whose owner has a destination and whose backup may
   exist (its requestedAt is the soft-delete time, so a re-sent job is the same job);
3. the records with their path claims and id-prefix entries, in transactions.

``pixflare delete ID --purge`` removes one image the same way, with these functions
(its backup removed at once rather than queued: the name may be reused right after).

A crash after 1 or 2 leaves the records in the index, so the next run repeats the
page; deleting an absent object or re-sending the same backup job does no harm.

Phase ``orphans``: the bucket listed in key order, a page at a time. An object is
an orphan when its key parses as an image object and no path claim exists for its
prefix; orphans older than the grace period are deleted, younger ones (an upload
may be in flight) and keys that are not image keys are left alone and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from lambdas.cron.batch import enqueue_backup_jobs
from lambdas.cron.runner import JobName, StepResult
from lambdas.shared.clock import iso
from lambdas.shared.config import Settings
from lambdas.shared.destinations import DestinationRepository
from lambdas.shared.errors import PermanentError
from lambdas.shared.images import ImageRecord, ImageRepository, is_purge_due
from lambdas.shared.keys import ImagePath, InvalidNameError, parse_key
from lambdas.shared.messages import BackupJob
from lambdas.shared.objects import ImagesBucket, ListedObject

# 50 images x 9 keys fit one DeleteObjects call (the records' deletion splits itself into
# transactions within DynamoDB's 100 actions).
MAX_IMAGES_PER_TRANSACTION = 50
EXPIRED_PAGE_SIZE = MAX_IMAGES_PER_TRANSACTION
LIST_PAGE_SIZE = 1000
ORPHAN_GRACE = timedelta(hours=24)
# A backup may exist at the destination in these states (none / deleted: nothing to remove).
BACKED_UP_STATUSES = frozenset({"synced", "pending", "failed"})


# -- pure decisions -----------------------------------------------------------------------
def retention_cutoff(now: datetime, retention_days: int) -> str:
    """Images soft-deleted before this (ISO, sortable) are due."""
    return iso(now - timedelta(days=retention_days))


def image_object_keys(record: ImageRecord) -> list[str]:
    """Every key the image may have: the fixed layout plus any variant the record lists."""
    prefix = record.path.prefix
    keys = set(record.path.all_keys())
    keys.add(record.original_key)
    keys.update(info.key for info in record.variants.values())
    # Only this image's own prefix: a corrupt record must never point the job elsewhere.
    return sorted(key for key in keys if key.startswith(prefix))


def delete_image_objects(records: Iterable[ImageRecord], default_bucket: str) -> int:
    """Every object of every image, by bucket (DeleteObjects; absent keys are no error)."""
    by_bucket: dict[str, list[str]] = {}
    for record in records:
        by_bucket.setdefault(record.bucket or default_bucket, []).extend(image_object_keys(record))
    return sum(ImagesBucket(bucket).delete(keys) for bucket, keys in by_bucket.items())


def backup_delete_jobs(
    records: Iterable[ImageRecord], owners_with_destination: set[str]
) -> list[BackupJob]:
    jobs = []
    for record in records:
        if record.backup_status not in BACKED_UP_STATUSES:
            continue
        if record.owner not in owners_with_destination:
            continue
        jobs.append(
            BackupJob.model_validate(
                {
                    "imageId": record.image_id,
                    "owner": record.owner,
                    "action": "delete",
                    "album": record.album,
                    "filename": record.filename,
                    # Deterministic: a re-run after a crash sends the same job, not a new one.
                    "requestedAt": record.deleted_at or record.updated_at or record.created_at,
                }
            )
        )
    return jobs


@dataclass
class OrphanPlan:
    delete: list[str] = field(default_factory=list)
    kept_young: int = 0
    unrecognised: int = 0
    claimed: int = 0


def parse_listing(
    objects: Iterable[ListedObject],
) -> tuple[list[tuple[ListedObject, ImagePath]], int]:
    """Objects with an image key (and their path), and how many keys are not image keys."""
    parsed = []
    unrecognised = 0
    for obj in objects:
        try:
            path, _leaf = parse_key(obj.key)
        except InvalidNameError:
            unrecognised += 1
            continue
        parsed.append((obj, path))
    return parsed, unrecognised


def plan_orphans(
    parsed: Sequence[tuple[ListedObject, ImagePath]],
    claimed: Iterable[str],
    *,
    now: datetime,
    grace: timedelta = ORPHAN_GRACE,
) -> OrphanPlan:
    claims = set(claimed)
    plan = OrphanPlan()
    for obj, path in parsed:
        if path.claim in claims:
            plan.claimed += 1
        elif now - obj.last_modified < grace:
            plan.kept_young += 1
        else:
            plan.delete.append(obj.key)
    return plan


# -- the job --------------------------------------------------------------------------------
Phase = Literal["expired", "orphans"]


class CleanupJob:
    name: JobName = "cleanup"

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        *,
        expired_page_size: int | None = None,
        list_page_size: int | None = None,
        grace: timedelta = ORPHAN_GRACE,
    ) -> None:
        self.settings = settings
        self.now = now
        self.bucket = settings.require("images_bucket")
        self.images = ImageRepository(settings.require("images_table"))
        self.destinations = (
            DestinationRepository(settings.destinations_table)
            if settings.destinations_table
            else None
        )
        self.expired_page_size = min(
            expired_page_size or EXPIRED_PAGE_SIZE, MAX_IMAGES_PER_TRANSACTION
        )
        self.list_page_size = list_page_size or LIST_PAGE_SIZE
        self.grace = grace

    def step(self, cursor: Mapping[str, Any]) -> StepResult:
        phase = cursor.get("phase", "expired")
        if phase == "expired":
            return self.expired_step(cursor.get("start"))
        if phase == "orphans":
            return self.orphan_step(cursor.get("after"))
        raise PermanentError(f"unknown cleanup phase {phase!r}")

    # -- expired soft-deletes ---------------------------------------------------------------
    def expired_step(self, start_key: Mapping[str, Any] | None) -> StepResult:
        cutoff = retention_cutoff(self.now, self.settings.soft_delete_retention_days)
        found, last_key = self.images.deleted_before(
            cutoff, limit=self.expired_page_size, start_key=start_key
        )
        # The index is eventually consistent: trust the record's own fields.
        retention = self.settings.soft_delete_retention_days
        records = [r for r in found if is_purge_due(r, self.now, retention)]
        counts = {"expired_images": len(records)}
        if records:
            counts["objects_deleted"] = delete_image_objects(records, self.bucket)
            backed_up = {r.owner for r in records if r.backup_status in BACKED_UP_STATUSES}
            with_destination = (
                self.destinations.owners_among(backed_up) if self.destinations else set()
            )
            jobs = backup_delete_jobs(records, with_destination)
            counts["backup_deletes_queued"] = enqueue_backup_jobs(self.settings, jobs)
            counts["records_deleted"] = self.images.delete_many(records)
        next_cursor: dict[str, Any] = (
            {"phase": "expired", "start": last_key} if last_key else {"phase": "orphans"}
        )
        return StepResult(next_cursor, counts)

    # -- orphaned objects ---------------------------------------------------------------
    def orphan_step(self, after: str | None) -> StepResult:
        page = ImagesBucket(self.bucket).list_page(after=after, page_size=self.list_page_size)
        listed = page.objects
        parsed, unrecognised = parse_listing(listed)
        claimed = self.images.claimed_paths(path for _, path in parsed) if parsed else {}
        plan = plan_orphans(parsed, claimed, now=self.now, grace=self.grace)
        deleted = ImagesBucket(self.bucket).delete(plan.delete) if plan.delete else 0
        counts = {
            "objects_listed": len(listed),
            "orphans_deleted": deleted,
            "orphans_kept_young": plan.kept_young,
            "unrecognised_keys": unrecognised,
        }
        if page.truncated and listed:
            return StepResult({"phase": "orphans", "after": listed[-1].key}, counts)
        return StepResult(None, counts)
