"""Backup sync (03:00 UTC): queue what is not backed up, verify a sample of what is.

One step per owner with a destination (the destinations table's all-destinations
index, a page of one owner at a time):

- queue: up to BACKUP_SYNC_LIMIT images whose backup is ``pending`` or ``failed``,
  oldest first (the by-backup-state index), as backup upload jobs. Their requestedAt
  is the job's ``now``, so the same run started twice sends the same jobs.
- verify: up to BACKUP_VERIFY_SAMPLE ``synced`` images, least recently verified
  first: HEAD at the destination. Missing, or size / SHA-256 metadata that differ
  from the record -> back to ``pending`` and queued; matching -> ``backup_state_at``
  moves to now (with ``backup.verified_at``), so tomorrow's sample is other images.
  Each record update is conditional on the state read, so a backup job finishing
  meanwhile is never overwritten. A destination that fails to answer ends that
  owner's verification for this run (its images stay first in line for the next).

Before either, the owner's endpoint goes through the same policy as the backup
function (lambdas/shared/endpoint_policy.py), now: a destination it refuses (saved
before the policy existed, edited by hand, or a name that now resolves to a private
address) gets nothing queued and nothing verified, the refusal is logged with its
reason and counted (``refused``, and the BackupDestinationRefused metric).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.backup.pipeline import DESTINATION_REFUSED_METRIC, META_SHA256, META_SIZE
from lambdas.backup.remote import REMOTE_TIMEOUTS, check_endpoint, remote_client
from lambdas.cron.batch import enqueue_backup_jobs
from lambdas.cron.runner import JobName, StepResult
from lambdas.shared import aws
from lambdas.shared.clock import iso
from lambdas.shared.config import Settings
from lambdas.shared.deadline import Deadline
from lambdas.shared.destinations import Destination, DestinationRepository, decrypt_credentials
from lambdas.shared.endpoint_policy import EndpointPolicy, EndpointRefusedError
from lambdas.shared.errors import (
    ConditionFailedError,
    NotFoundError,
    PixflareError,
    aws_errors,
)
from lambdas.shared.images import BackupStatus, ImageRecord, ImageRepository, backup_state_fields
from lambdas.shared.messages import BackupJob
from lambdas.shared.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A HEAD is started only with time for it at the destination client's full timeouts
# (32 s, retry included), then the verdict's record update and the runner's
# continuation send at the AWS client's shortest (3 s each), and the report margin:
# 39 s.
VERIFY_SECONDS = aws.seconds_needed(REMOTE_TIMEOUTS[0], aws.AWS_TIMEOUTS[-1], aws.AWS_TIMEOUTS[-1])

Verdict = Literal["ok", "missing", "mismatch"]


# -- pure ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateEntry:
    """An image as the by-backup-state index lists it: when it entered its state, and it."""

    state_at: str
    record: ImageRecord


def oldest_first(
    pending: Sequence[StateEntry], failed: Sequence[StateEntry], limit: int
) -> list[StateEntry]:
    """Merge two oldest-first lists (by when each entered its state) and keep ``limit``."""
    merged = sorted([*pending, *failed], key=lambda e: (e.state_at, e.record.image_id))
    return merged[:limit]


def upload_jobs(records: Sequence[ImageRecord], requested_at: str) -> list[BackupJob]:
    return [
        BackupJob.model_validate(
            {
                "imageId": r.image_id,
                "owner": r.owner,
                "action": "upload",
                "requestedAt": requested_at,
            }
        )
        for r in records
    ]


def verdict(record: ImageRecord, head: Mapping[str, Any] | None) -> tuple[Verdict, str]:
    """Compare a destination HEAD with the record: the object, its size and its SHA-256."""
    if head is None:
        return "missing", "backup object missing at the destination"
    metadata = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
    expected_sha = record.sha256 or str(record.backup.get("sha256", ""))
    expected_size = record.bytes or int(record.backup.get("bytes", 0) or 0)
    stored_size = record.backup.get("stored_bytes")
    if metadata.get(META_SHA256) != expected_sha:
        return "mismatch", "backup object's SHA-256 metadata differs from the image"
    if metadata.get(META_SIZE) != str(expected_size):
        return "mismatch", "backup object's size metadata differs from the image"
    if stored_size is not None and int(head.get("ContentLength", -1)) != int(stored_size):
        return "mismatch", "backup object's length differs from what was stored"
    return "ok", ""


# -- the job ------------------------------------------------------------------------------
@dataclass
class OwnerOutcome:
    queued: int = 0
    verified_ok: int = 0
    requeued: int = 0
    verify_errors: int = 0
    refused: int = 0


class BackupSyncJob:
    name: JobName = "backup-sync"

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        *,
        deadline: Callable[[], Deadline] = Deadline.none,
    ) -> None:
        self.settings = settings
        self.now = iso(now)
        self.images = ImageRepository(settings.require("images_table"))
        self.destinations = DestinationRepository(settings.require("destinations_table"))
        self.deadline = deadline
        self.policy = EndpointPolicy.from_settings(settings)

    def step(self, cursor: Mapping[str, Any]) -> StepResult:
        owners, last_key = self.destinations.owners(limit=1, start_key=cursor.get("start"))
        counts: dict[str, int] = {"owners": len(owners)}
        for owner in owners:
            outcome = self.sync_owner(owner)
            counts["queued"] = counts.get("queued", 0) + outcome.queued
            counts["verified_ok"] = counts.get("verified_ok", 0) + outcome.verified_ok
            counts["requeued"] = counts.get("requeued", 0) + outcome.requeued
            counts["verify_errors"] = counts.get("verify_errors", 0) + outcome.verify_errors
            if outcome.refused:
                counts["refused"] = counts.get("refused", 0) + outcome.refused
        return StepResult({"start": last_key} if last_key else None, counts)

    def sync_owner(self, owner: str) -> OwnerOutcome:
        outcome = OwnerOutcome()
        if not self.settings.enable_queues:
            return outcome  # nothing could carry the uploads
        destination = self.destinations.get(owner)
        if destination is None:
            return outcome  # removed since its page was read
        if self.refused(destination):
            outcome.refused = 1
            return outcome
        limit = self.settings.backup_sync_limit
        due = oldest_first(
            self.in_state(owner, "pending", limit), self.in_state(owner, "failed", limit), limit
        )
        jobs = upload_jobs([entry.record for entry in due], self.now)
        outcome.queued = enqueue_backup_jobs(self.settings, jobs)
        if self.settings.backup_verify_sample > 0:
            self.verify_owner(destination, outcome)
        return outcome

    def refused(self, destination: Destination) -> bool:
        """The endpoint policy's verdict on the destination, now (logged and counted)."""
        try:
            check_endpoint(destination, self.policy)
        except EndpointRefusedError as err:
            metrics.add_metric(name=DESTINATION_REFUSED_METRIC, unit=MetricUnit.Count, value=1)
            logger.warning(
                "backup destination refused: nothing queued or verified",
                extra={"owner": destination.owner, "reason": err.reason, "outcome": "refused"},
            )
            return True
        except PixflareError:
            return False  # does not resolve now: the uploads retry, verification says why
        return False

    def verify_owner(self, destination: Destination, outcome: OwnerOutcome) -> None:
        owner = destination.owner
        sample = self.in_state(owner, "synced", self.settings.backup_verify_sample)
        if not sample:
            return
        try:
            target = remote_client(destination, decrypt_credentials(destination), self.policy)
        except PixflareError as err:
            outcome.verify_errors += 1
            logger.warning(
                "backup verification skipped: destination unusable",
                extra={"owner": owner, "reason": str(err)},
            )
            return
        requeue: list[ImageRecord] = []
        for entry in sample:
            record = entry.record
            if not self.deadline().fits(VERIFY_SECONDS):
                break  # the rest stay least recently verified: first in line next run
            try:
                head = head_backup(target, destination, record)
            except PixflareError as err:
                outcome.verify_errors += 1
                logger.warning(
                    "backup verification stopped: destination did not answer",
                    extra={"owner": owner, "reason": str(err)},
                )
                break
            result, reason = verdict(record, head)
            if result == "ok":
                outcome.verified_ok += self.mark_verified(entry)
            elif self.mark_pending(entry, reason):
                requeue.append(record)
        outcome.requeued = enqueue_backup_jobs(self.settings, upload_jobs(requeue, self.now))

    def in_state(self, owner: str, status: BackupStatus, limit: int) -> list[StateEntry]:
        """Oldest first, from the by-backup-state index (one page: ``limit`` is small)."""
        records, _ = self.images.by_backup_state(owner, status, limit=limit)
        return [StateEntry(record.backup_state_at or "", record) for record in records]

    def mark_verified(self, entry: StateEntry) -> int:
        backup = {**entry.record.backup, "verified_at": self.now}
        return self._update_if_unchanged(entry, {"backup_state_at": self.now, "backup": backup})

    def mark_pending(self, entry: StateEntry, reason: str) -> bool:
        record = entry.record
        fields, _ = backup_state_fields(record.owner, "pending", self.now)
        fields["backup"] = {**record.backup, "last_error": reason, "last_error_at": self.now}
        return bool(self._update_if_unchanged(entry, fields))

    def _update_if_unchanged(self, entry: StateEntry, fields: dict[str, Any]) -> int:
        """Update only if the backup state is still what this run read (1 if updated)."""
        try:
            self.images.update_if_backup_state(
                entry.record.image_id, fields, status="synced", since=entry.state_at
            )
        except ConditionFailedError:
            return 0  # a backup job or another run changed it meanwhile: theirs is newer
        return 1


def head_backup(
    target: S3Client, destination: Destination, record: ImageRecord
) -> dict[str, Any] | None:
    """The destination's HEAD of the image's backup object, or None when it is not there."""
    key = str(
        record.backup.get("key")
        or destination.object_key(record.owner, record.album, record.filename)
    )
    try:
        with aws_errors(f"check backup {destination.bucket}/{key}"):
            response = target.head_object(Bucket=destination.bucket, Key=key)
    except NotFoundError:
        return None
    return dict(response)
