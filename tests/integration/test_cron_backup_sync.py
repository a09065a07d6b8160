"""Backup sync under moto: pending images queued up to the limit, tampered backups re-queued.

The destination is an S3 bucket in the same in-process moto, reached through the
backup package's own client builder with KMS-encrypted credentials; real backups
are made by the backup worker's own job logic.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from lambdas.backup.pipeline import process_backup
from lambdas.cron.registry import run_to_completion
from lambdas.shared.clock import iso
from lambdas.shared.config import load_settings
from lambdas.shared.destinations import (
    Destination,
    DestinationCredentials,
    DestinationRepository,
    encrypt_credentials,
)
from lambdas.shared.dynamo import to_item
from lambdas.shared.images import ImageRecord, ImageRepository, backup_state_fields
from lambdas.shared.keys import ImagePath
from lambdas.shared.messages import BackupJob, parse_message
from lambdas.shared.originals import store_upload
from lambdas.shared.worker import JobContext
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env

BASE = datetime(2026, 5, 1, tzinfo=UTC)
BACKUP_BUCKET = "alice-backups"


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("cron"))
    return aws


def add_destination(owner: str) -> None:
    settings = load_settings()
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BACKUP_BUCKET)
    ciphertext = encrypt_credentials(
        settings, owner, DestinationCredentials("AKIAEXAMPLEKEY000001", SecretStr("s3cr3t"))
    )
    DestinationRepository(settings.destinations_table).put(
        Destination(owner=owner, bucket=BACKUP_BUCKET, credentials_ciphertext=ciphertext)
    )


def in_state(owner: str, status: str, at: datetime, n: int) -> tuple[ImageRecord, dict]:
    """An image record in a backup state, as the table item that indexes it."""
    path = ImagePath(owner, "album", f"img{n:04d}-{status}.jpg")
    record = ImageRecord(
        image_id=f"{n:04d}".ljust(32, "0"),
        owner=owner,
        album="album",
        filename=path.filename,
        bucket="pixflare-images",
        original_key=path.original_key,
        created_at=iso(at),
        backup_status=status,  # type: ignore[arg-type]
    )
    fields, _ = backup_state_fields(owner, record.backup_status, iso(at))
    return record, {
        "pk": f"image#{record.image_id}",
        **record.model_dump(exclude_none=True),
        **fields,
    }


def seed(env: Resources, items: list[dict]) -> None:
    """BatchWriteItem: fast enough to seed hundreds of records in moto."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    for start in range(0, len(items), 25):
        ddb.batch_write_item(
            RequestItems={
                env.tables["images"]: [
                    {"PutRequest": {"Item": to_item(item)}} for item in items[start : start + 25]
                ]
            }
        )


def queued(env: Resources) -> list[dict[str, Any]]:
    """Every backup job on the queue (receive_all stops at 100; a second call gets the rest)."""
    messages = receive_all(env.queue_urls["backup"], max_messages=100)
    messages += receive_all(env.queue_urls["backup"], max_messages=100)
    return [json.loads(m["Body"]) for m in messages]


def test_pending_images_are_queued_up_to_the_limit_oldest_first(env: Resources) -> None:
    # Given alice (with a destination) has 150 pending images, plus one failed image older
    # than all of them and one newer; bob (no destination) has pending ones too
    add_destination("alice")
    seeded = [in_state("alice", "pending", BASE + timedelta(minutes=n), n) for n in range(150)]
    old_failed = in_state("alice", "failed", BASE - timedelta(days=1), 900)
    new_failed = in_state("alice", "failed", BASE + timedelta(days=1), 901)
    bobs = in_state("bob", "pending", BASE, 902)
    seed(env, [item for _, item in [*seeded, old_failed, new_failed, bobs]])
    pending = [record for record, _ in seeded]

    # When backup sync runs
    report = run_to_completion("backup-sync", load_settings(), BASE + timedelta(days=2))

    # Then exactly 100 uploads were queued: the oldest failed one and the 99 oldest pending
    bodies = queued(env)
    assert len(bodies) == 100
    assert {b["imageId"] for b in bodies} == {old_failed[0].image_id} | {
        r.image_id for r in pending[:99]
    }
    assert {(b["action"], b["owner"]) for b in bodies} == {("upload", "alice")}
    assert report.counts["queued"] == 100
    assert report.counts["owners"] == 1


def test_same_run_twice_sends_the_same_jobs(env: Resources) -> None:
    add_destination("alice")
    seed(env, [in_state("alice", "pending", BASE, 1)[1]])
    now = BASE + timedelta(days=1)
    run_to_completion("backup-sync", load_settings(), now)
    run_to_completion("backup-sync", load_settings(), now)
    jobs = [parse_message(BackupJob, json.dumps(b)) for b in queued(env)]
    # Two deliveries of one job: the backup worker's idempotency does it once.
    assert len(jobs) == 2
    assert len({job.idempotency_key() for job in jobs}) == 1


def back_up_three_images(env: Resources) -> list[ImageRecord]:
    """Upload three images and let the backup worker's logic copy them to the destination."""
    settings = load_settings()
    records = [
        store_upload(
            settings,
            b"\xff\xd8\xff\xe0" + f"image {n}".encode() * 10,
            owner="alice",
            album="a",
            filename=f"{n}.jpg",
        ).record
        for n in range(3)
    ]
    for body in queued(env):
        process_backup(parse_message(BackupJob, json.dumps(body)), JobContext(settings, "m", 1))
    images = ImageRepository(env.tables["images"])
    synced = [images.get(r.image_id) for r in records]
    assert [r.backup_status for r in synced if r] == ["synced"] * 3
    return [r for r in synced if r]


def test_tampered_and_missing_backups_are_requeued(env: Resources) -> None:
    # Given three synced backups: one deleted at the destination, one replaced by other bytes
    add_destination("alice")
    missing, tampered, intact = back_up_three_images(env)
    remote = boto3.client("s3", region_name=REGION)
    remote.delete_object(Bucket=BACKUP_BUCKET, Key=missing.backup["key"])
    remote.put_object(
        Bucket=BACKUP_BUCKET,
        Key=tampered.backup["key"],
        Body=b"not the image",
        Metadata={"pixflare-sha256": "0" * 64, "pixflare-size": "13"},
    )

    # When backup sync runs the next day
    now = datetime.now(UTC) + timedelta(days=1)
    report = run_to_completion("backup-sync", load_settings(), now)

    # Then the two bad ones are pending again (with the reason) and queued for upload
    images = ImageRepository(env.tables["images"])
    after = {r.image_id: images.get(r.image_id) for r in (missing, tampered, intact)}
    assert after[missing.image_id].backup_status == "pending"  # type: ignore[union-attr]
    assert "missing" in after[missing.image_id].backup["last_error"]  # type: ignore[union-attr]
    assert after[tampered.image_id].backup_status == "pending"  # type: ignore[union-attr]
    assert "SHA-256" in after[tampered.image_id].backup["last_error"]  # type: ignore[union-attr]
    bodies = queued(env)
    assert sorted(b["imageId"] for b in bodies) == sorted([missing.image_id, tampered.image_id])
    # and the intact one stays synced, marked verified now (so the sample rotates)
    kept = after[intact.image_id]
    assert kept is not None and kept.backup_status == "synced"
    assert kept.backup["verified_at"] == iso(now)
    assert report.counts["verified_ok"] == 1
    assert report.counts["requeued"] == 2


def test_verification_sample_is_bounded_and_rotates(
    env: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_VERIFY_SAMPLE", "2")
    load_settings.cache_clear()  # type: ignore[attr-defined]
    add_destination("alice")
    records = back_up_three_images(env)
    settings = load_settings()

    first = run_to_completion("backup-sync", settings, datetime.now(UTC) + timedelta(days=1))
    second = run_to_completion("backup-sync", settings, datetime.now(UTC) + timedelta(days=2))

    assert first.counts["verified_ok"] == second.counts["verified_ok"] == 2
    images = ImageRepository(env.tables["images"])
    verified = [images.get(r.image_id).backup.get("verified_at") for r in records]  # type: ignore[union-attr]
    # every backup was checked over the two runs, the least recently verified first
    assert all(verified)


# -- the backfill of a `backup set` that stopped part way ----------------------------------
def image_item(owner: str, n: int, status: str, **fields: Any) -> dict[str, Any]:
    """An uploaded image's item (an original arrived), in a backup state."""
    _, item = in_state(owner, status, BASE + timedelta(minutes=n), n)
    if status == "none":
        item = {k: v for k, v in item.items() if k not in {"backup_state", "backup_state_at"}}
    return {**item, "original_etag": f'"etag{n}"', "ingested_etag": f'"etag{n}"', **fields}


def set_destination(owner: str, *, updated_at: datetime, backfilled: bool) -> None:
    add_destination(owner)
    settings = load_settings()
    repository = DestinationRepository(settings.destinations_table)
    saved = repository.get(owner)
    assert saved is not None
    repository.put(
        Destination(
            owner=owner,
            bucket=saved.bucket,
            credentials_ciphertext=saved.credentials_ciphertext,
            created_at=iso(updated_at),
            updated_at=iso(updated_at),
            backfilled_at=iso(updated_at) if backfilled else "",
        )
    )


def synced_at(bucket: str, owner: str, n: int) -> dict[str, Any]:
    return {
        "backup": {
            "bucket": bucket,
            "endpoint": "",
            "key": f"{owner}/album/img{n:04d}-synced.jpg",
        }
    }


def test_an_interrupted_set_is_finished_by_the_next_daily_sync(
    env: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given alice's set stopped part way an hour ago: five images never backed up, one
    # backed up to an earlier destination, one backed up here, and three that are not
    # candidates (a reservation with no original yet, a soft-deleted image, a pending one
    # that the by-backup-state step queues anyway)
    set_destination("alice", updated_at=BASE - timedelta(hours=1), backfilled=False)
    never = [image_item("alice", n, "none") for n in range(5)]
    elsewhere = image_item("alice", 10, "synced", **synced_at("old-bucket", "alice", 10))
    here = image_item("alice", 11, "synced", **synced_at(BACKUP_BUCKET, "alice", 11))
    reservation = {**image_item("alice", 12, "none"), "original_etag": ""}
    deleted = image_item("alice", 13, "none", deleted_at=iso(BASE))
    pending = image_item("alice", 14, "pending")
    seed(env, [*never, elsewhere, here, reservation, deleted, pending])
    # (pages of two, so the sweep carries on over several steps)
    monkeypatch.setattr("lambdas.cron.backup_sync.BACKFILL_PAGE_SIZE", 2)

    # When backup sync runs (with no verification sample, to count only uploads)
    use_env(monkeypatch, {"BACKUP_VERIFY_SAMPLE": "0"})
    report = run_to_completion("backup-sync", load_settings(), BASE)

    # Then the six not backed up here are queued, each once, and now pending
    expected = {i["image_id"] for i in [*never, elsewhere]}
    bodies = queued(env)
    assert sorted(b["imageId"] for b in bodies) == sorted(expected | {pending["image_id"]})
    assert report.counts["backfilled"] == 6
    assert report.counts["queued"] == 1  # the pending one, by the by-backup-state step
    assert report.counts["owners"] == 1
    images = ImageRepository(load_settings().images_table)
    for image_id in expected:
        record = images.get(image_id)
        assert record is not None and record.backup_status == "pending"
    assert images.get(reservation["image_id"]).backup_status == "none"  # type: ignore[union-attr]
    assert images.get(here["image_id"]).backup_status == "synced"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("updated_ago", "backfilled"),
    [(timedelta(hours=1), True), (timedelta(days=3), False)],
    ids=["set-finished", "set-long-ago"],
)
def test_no_sweep_after_a_finished_set_or_long_after_one(
    env: Resources, updated_ago: timedelta, backfilled: bool
) -> None:
    set_destination("alice", updated_at=BASE - updated_ago, backfilled=backfilled)
    seed(env, [image_item("alice", n, "none") for n in range(3)])
    report = run_to_completion("backup-sync", load_settings(), BASE)
    assert "backfilled" not in report.counts
    assert queued(env) == []
