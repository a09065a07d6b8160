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

- backfill sweep: only when the owner's last ``pixflare backup set`` did not finish
  queueing the owner's earlier images (the destination's ``backfilled_at`` differs
  from its ``updated_at``) and was made at most BACKFILL_SWEEP_WINDOW ago. It walks
  the owner's images (the by-owner index, a page a step) and marks and queues those
  not backed up at the destination, as the set does. Images still ``none`` are in
  no sparse index, so this walk is the only way to find them; it is done after an
  interrupted set only, never as a daily cost.

Before any of these, the owner's endpoint goes through the same policy as the backup
function (lambdas/shared/endpoint_policy.py), now: a destination it refuses (saved
before the policy existed, edited by hand, or a name that now resolves to a private
address) gets nothing queued and nothing verified, the refusal is logged with its
reason and counted (``refused``, and the BackupDestinationRefused metric).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from lambdas.shared.originals import REFUSED_ERROR_PREFIX

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


# -- backfill: images uploaded before their owner had this destination ---------------------
BACKFILL_PAGE_SIZE = 100  # images read from the by-owner index a round
# How long after an interrupted `backup set` the daily sync finishes its backfill.
BACKFILL_SWEEP_WINDOW = timedelta(days=2)

ProgressState = Literal["backedUp", "queued", "failed", "notYet"]
PROGRESS_STATES: tuple[ProgressState, ...] = ("backedUp", "queued", "failed", "notYet")


def has_original(record: ImageRecord) -> bool:
    """An original arrived and was kept: there is something to back up."""
    return bool(record.original_etag) and not (record.error or "").startswith(REFUSED_ERROR_PREFIX)


def backed_up_at(record: ImageRecord, destination: Destination) -> bool:
    """Synced to this very destination (endpoint, bucket and key), not to an earlier one."""
    backup = record.backup
    key = destination.object_key(record.owner, record.album, record.filename)
    return (
        record.backup_status == "synced"
        and str(backup.get("endpoint") or "") == destination.endpoint_url
        and backup.get("bucket") == destination.bucket
        and backup.get("key") == key
    )


def progress_state(record: ImageRecord, destination: Destination) -> ProgressState | None:
    """Where the image's backup at ``destination`` stands; None: nothing to back up."""
    if not has_original(record) or record.backup_status == "deleted":
        return None
    if backed_up_at(record, destination):
        return "backedUp"
    if record.backup_status == "pending":
        return "queued"
    if record.backup_status == "failed":
        return "failed"
    return "notYet"  # `none`, or synced to a destination the owner has since replaced


def sweep_due(destination: Destination, now: datetime) -> bool:
    """The owner's last set did not finish its backfill, and was made recently."""
    if destination.backfill_finished or not destination.updated_at:
        return False
    since = now - datetime.fromisoformat(destination.updated_at)
    return timedelta(0) <= since <= BACKFILL_SWEEP_WINDOW


@dataclass
class BackfillRound:
    queued: int = 0
    backed_up: int = 0  # already backed up at the destination: nothing to do
    next_key: dict[str, Any] | None = None


class Backfill:
    """Brings an owner's images to their destination: each image not backed up there is
    first marked ``pending`` (conditionally: a backup job finishing meanwhile wins), so
    the daily sync's by-backup-state step finds it should the queueing stop, then queued
    with SendMessageBatch, a page of the by-owner index a round.

    ``requeue``: also queue images already ``pending`` or ``failed`` (``backup set``: a
    re-set retries them); the daily sweep leaves those to its by-backup-state step.
    """

    def __init__(
        self, settings: Settings, destination: Destination, now: str, *, requeue: bool
    ) -> None:
        self.settings = settings
        self.destination = destination
        self.now = now
        self.requeue = requeue
        self.images = ImageRepository(settings.require("images_table"))

    def round(self, start_key: Mapping[str, Any] | None = None) -> BackfillRound:
        records, next_key = self.images.list_for_owner(
            self.destination.owner, limit=BACKFILL_PAGE_SIZE, start_key=start_key
        )
        result = BackfillRound(next_key=next_key)
        due: list[ImageRecord] = []
        for record in records:
            state = progress_state(record, self.destination)
            if state == "backedUp":
                result.backed_up += 1
            elif state is not None and self.mark_pending(record, state):
                due.append(record)
        result.queued = enqueue_backup_jobs(self.settings, upload_jobs(due, self.now))
        return result

    def mark_pending(self, record: ImageRecord, state: ProgressState) -> bool:
        """True when the image is to be queued (now ``pending``)."""
        if state == "queued":
            return self.requeue  # already pending: its state stays as it is
        if state == "failed" and not self.requeue:
            return False
        fields, _ = backup_state_fields(record.owner, "pending", self.now)
        try:
            if record.backup_status == "none":
                self.images.update_if_never_backed_up(record.image_id, fields)
            elif record.backup_state_at is None:
                return False  # not in the index, so no condition to hold it to: left as is
            else:
                self.images.update_if_backup_state(
                    record.image_id,
                    fields,
                    status=record.backup_status,
                    since=record.backup_state_at,
                )
        except ConditionFailedError:
            return False  # changed meanwhile (backed up, deleted): not ours to queue
        return True

    def run(self, on_round: Callable[[BackfillRound], None] = lambda _r: None) -> BackfillRound:
        """Every page; the totals (``next_key`` None)."""
        total = BackfillRound()
        start: Mapping[str, Any] | None = None
        while True:
            result = self.round(start)
            total.queued += result.queued
            total.backed_up += result.backed_up
            on_round(result)
            if not result.next_key:
                return total
            start = result.next_key


# -- the job ------------------------------------------------------------------------------
@dataclass
class OwnerOutcome:
    queued: int = 0
    verified_ok: int = 0
    requeued: int = 0
    verify_errors: int = 0
    refused: int = 0
    backfilled: int = 0
    # Where the backfill sweep of this owner carries on (its next step), if unfinished.
    sweep_next: dict[str, Any] | None = None


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
        # One owner a step; a backfill sweep holds the step on its owner (re-read from the
        # same start) with "sweep" saying where in that owner's images it carries on.
        start = cursor.get("start")
        owners, last_key = self.destinations.owners(limit=1, start_key=start)
        sweep_from = cursor.get("sweep")
        counts: dict[str, int] = {} if sweep_from else {"owners": len(owners)}
        for owner in owners:
            if sweep_from:
                outcome = self.sweep_owner(owner, sweep_from)
            else:
                outcome = self.sync_owner(owner)
                counts["queued"] = counts.get("queued", 0) + outcome.queued
                counts["verified_ok"] = counts.get("verified_ok", 0) + outcome.verified_ok
                counts["requeued"] = counts.get("requeued", 0) + outcome.requeued
                counts["verify_errors"] = counts.get("verify_errors", 0) + outcome.verify_errors
            if outcome.refused:
                counts["refused"] = counts.get("refused", 0) + outcome.refused
            if outcome.backfilled:
                counts["backfilled"] = counts.get("backfilled", 0) + outcome.backfilled
            if outcome.sweep_next:
                held = {"start": start} if start else {}
                return StepResult({**held, "sweep": outcome.sweep_next}, counts)
        return StepResult({"start": last_key} if last_key else None, counts)

    def sync_owner(self, owner: str) -> OwnerOutcome:
        outcome = OwnerOutcome()
        destination = self.usable_destination(owner, outcome)
        if destination is None:
            return outcome
        limit = self.settings.backup_sync_limit
        due = oldest_first(
            self.in_state(owner, "pending", limit), self.in_state(owner, "failed", limit), limit
        )
        jobs = upload_jobs([entry.record for entry in due], self.now)
        outcome.queued = enqueue_backup_jobs(self.settings, jobs)
        if self.settings.backup_verify_sample > 0:
            self.verify_owner(destination, outcome)
        if sweep_due(destination, datetime.fromisoformat(self.now)):
            self.sweep_round(destination, None, outcome)
        return outcome

    def sweep_owner(self, owner: str, start_key: Mapping[str, Any]) -> OwnerOutcome:
        outcome = OwnerOutcome()
        destination = self.usable_destination(owner, outcome)
        if destination is not None:
            self.sweep_round(destination, start_key, outcome)
        return outcome

    def sweep_round(
        self,
        destination: Destination,
        start_key: Mapping[str, Any] | None,
        outcome: OwnerOutcome,
    ) -> None:
        backfill = Backfill(self.settings, destination, self.now, requeue=False)
        result = backfill.round(start_key)
        outcome.backfilled += result.queued
        outcome.sweep_next = result.next_key
        if result.queued:
            logger.info(
                "backfill of an interrupted backup set: images queued",
                extra={"owner": destination.owner, "queued": result.queued},
            )

    def usable_destination(self, owner: str, outcome: OwnerOutcome) -> Destination | None:
        """The owner's destination if backups can go there now (counted when refused)."""
        if not self.settings.enable_queues:
            return None  # nothing could carry the uploads
        destination = self.destinations.get(owner)
        if destination is None:
            return None  # removed since its page was read
        if self.refused(destination):
            outcome.refused = 1
            return None
        return destination

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
