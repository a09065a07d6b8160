"""Cleanup under moto: expired soft-deletes, orphans and the grace period, a crash half-way."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lambdas.cron.registry import run_to_completion
from lambdas.shared.clock import iso
from lambdas.shared.config import load_settings
from lambdas.shared.errors import TransientError
from lambdas.shared.images import ImageRecord, ImageRepository, backup_state_fields
from lambdas.shared.keys import ImagePath
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env
from tests.support.faults import FaultPlan, inject

# Objects are written at wall-clock time; every `now` here is far from it on purpose,
# so the grace period decides the same way however long a test takes.
BASE = datetime.now(UTC)
DAYS_LATER = BASE + timedelta(days=2)
HOUR_LATER = BASE + timedelta(hours=1)


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, {**aws.env("cron"), "SOFT_DELETE_RETENTION_DAYS": "30"})
    return aws


def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def keys(env: Resources) -> set[str]:
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=env.bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def seed_image(
    env: Resources,
    owner: str = "alice",
    album: str = "trips",
    *,
    deleted_at: datetime | None = None,
    backup_status: str = "none",
) -> ImageRecord:
    """An image record with its path claim, its original and two variants in the bucket."""
    path = ImagePath(owner, album, f"photo-{uuid.uuid4().hex[:8]}.jpg")
    record = ImageRecord(
        image_id=uuid.uuid4().hex,
        owner=owner,
        album=album,
        filename=path.filename,
        bucket=env.bucket,
        original_key=path.original_key,
        created_at=iso(BASE - timedelta(days=90)),
        variants_status="ready",
        backup_status=backup_status,  # type: ignore[arg-type]
    )
    extra, _ = backup_state_fields(owner, record.backup_status, record.created_at)
    extra.pop("backup_status")
    images = ImageRepository(env.tables["images"])
    images.create(record, extra=extra)
    for key in (path.original_key, path.variant_key("w128"), path.variant_key("thumb")):
        s3().put_object(Bucket=env.bucket, Key=key, Body=b"x")
    if deleted_at is not None:
        images.soft_delete(record.image_id, iso(deleted_at))
    return record


def add_destination(env: Resources, owner: str) -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=env.tables["destinations"],
        Item={"owner": {"S": owner}, "kind": {"S": "destination"}, "bucket": {"S": "b"}},
    )


def claim_exists(env: Resources, record: ImageRecord) -> bool:
    return bool(ImageRepository(env.tables["images"]).claimed_paths([record.path]))


def test_expired_soft_deletes_go_and_recent_ones_stay(env: Resources) -> None:
    # Given one image deleted 40 days ago (backed up, owner has a destination), one
    # deleted 10 days ago, and one live image
    add_destination(env, "alice")
    expired = seed_image(env, deleted_at=BASE - timedelta(days=40), backup_status="synced")
    recent = seed_image(env, deleted_at=BASE - timedelta(days=10))
    live = seed_image(env)

    # When cleanup runs
    report = run_to_completion("cleanup", load_settings(), DAYS_LATER)

    # Then the expired image has no object, no record, no path claim and no id prefix left
    images = ImageRepository(env.tables["images"])
    remaining = keys(env)
    assert not any(k.startswith(expired.path.prefix) for k in remaining)
    assert images.get(expired.image_id) is None
    assert not claim_exists(env, expired)
    assert images.ids_with_prefix(expired.image_id[:8]) == []
    assert images.ids_with_prefix(recent.image_id[:8]) == [recent.image_id]
    # and its backup delete was queued, carrying what the backup worker needs
    [message] = receive_all(env.queue_urls["backup"])
    body = json.loads(message["Body"])
    assert body["imageId"] == expired.image_id
    assert body["action"] == "delete"
    assert (body["album"], body["filename"]) == (expired.album, expired.filename)
    # and the recent soft-delete and the live image are untouched
    for kept in (recent, live):
        assert images.get(kept.image_id) is not None
        assert kept.original_key in remaining
    assert report.done
    assert report.counts["records_deleted"] == 1
    assert report.counts["orphans_deleted"] == 0


@pytest.mark.parametrize("retention_days", [30, 7])
def test_retention_boundary_is_kept_to_the_hour(
    env: Resources, monkeypatch: pytest.MonkeyPatch, retention_days: int
) -> None:
    # Given soft-deletes an hour inside and an hour past SOFT_DELETE_RETENTION_DAYS
    use_env(monkeypatch, {"SOFT_DELETE_RETENTION_DAYS": str(retention_days)})
    retention = timedelta(days=retention_days)
    inside = seed_image(env, deleted_at=DAYS_LATER - retention + timedelta(hours=1))
    past = seed_image(env, deleted_at=DAYS_LATER - retention - timedelta(hours=1))

    # When cleanup runs
    report = run_to_completion("cleanup", load_settings(), DAYS_LATER)

    # Then only the one past the retention is gone: record, claim and objects
    images = ImageRepository(env.tables["images"])
    assert images.get(past.image_id) is None
    assert not claim_exists(env, past)
    assert images.get(inside.image_id) is not None
    assert claim_exists(env, inside)
    assert keys(env) == keys_of(inside)
    assert report.counts["records_deleted"] == 1


def test_no_backup_delete_without_destination_or_backup(env: Resources) -> None:
    add_destination(env, "alice")
    seed_image(env, "alice", deleted_at=BASE - timedelta(days=40), backup_status="none")
    seed_image(env, "bob", deleted_at=BASE - timedelta(days=40), backup_status="synced")

    report = run_to_completion("cleanup", load_settings(), DAYS_LATER)

    assert report.counts["records_deleted"] == 2
    assert receive_all(env.queue_urls["backup"]) == []


def test_orphans_past_the_grace_period_are_removed(env: Resources) -> None:
    # Given objects under a prefix no record claims, next to a live image and a non-image key
    live = seed_image(env)
    orphan_prefix = "alice/trips/gone.jpg/"
    for leaf in ("original", "w256", "og-image"):
        s3().put_object(Bucket=env.bucket, Key=orphan_prefix + leaf, Body=b"x")
    s3().put_object(Bucket=env.bucket, Key="exports/report.csv", Body=b"x")

    # When cleanup runs two days later
    report = run_to_completion("cleanup", load_settings(), DAYS_LATER)

    # Then the orphans are gone; the image and the unrecognised key stay
    remaining = keys(env)
    assert not any(k.startswith(orphan_prefix) for k in remaining)
    assert live.original_key in remaining
    assert "exports/report.csv" in remaining
    assert report.counts["orphans_deleted"] == 3
    assert report.counts["unrecognised_keys"] == 1


def test_young_orphans_are_left_alone(env: Resources) -> None:
    # Given an object whose record does not exist yet (an upload in flight, say)
    s3().put_object(Bucket=env.bucket, Key="alice/trips/new.jpg/original", Body=b"x")

    # When cleanup runs an hour later
    report = run_to_completion("cleanup", load_settings(), HOUR_LATER)

    # Then it is still there, counted as kept
    assert "alice/trips/new.jpg/original" in keys(env)
    assert report.counts["orphans_kept_young"] == 1
    assert report.counts["orphans_deleted"] == 0


def test_listing_and_expiry_work_across_pages(
    env: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdas.cron import cleanup

    monkeypatch.setattr(cleanup, "LIST_PAGE_SIZE", 4)
    monkeypatch.setattr(cleanup, "EXPIRED_PAGE_SIZE", 2)
    expired = [seed_image(env, deleted_at=BASE - timedelta(days=40)) for _ in range(5)]
    live = [seed_image(env) for _ in range(3)]

    report = run_to_completion("cleanup", load_settings(), DAYS_LATER)

    remaining = keys(env)
    assert remaining == {k for r in live for k in keys_of(r)}
    assert report.counts["records_deleted"] == len(expired)
    assert report.steps > 5


def keys_of(record: ImageRecord) -> set[str]:
    return {record.original_key, record.path.variant_key("w128"), record.path.variant_key("thumb")}


def test_rerun_after_a_crash_finishes_the_work(env: Resources) -> None:
    # Given two expired images, backed up, owner with a destination
    add_destination(env, "alice")
    expired = [
        seed_image(env, deleted_at=BASE - timedelta(days=40), backup_status="failed")
        for _ in range(2)
    ]

    # When the first run dies deleting the records (after the objects went, the jobs were sent)
    plan = FaultPlan(targets=("dynamodb.TransactWriteItems",), max_faults=1)
    with inject(plan), pytest.raises(TransientError):
        run_to_completion("cleanup", load_settings(), DAYS_LATER)
    assert plan.injected["dynamodb.TransactWriteItems"] == 1
    images = ImageRepository(env.tables["images"])
    assert all(images.get(r.image_id) is not None for r in expired)
    assert keys(env) == set()

    # and cleanup runs again
    report = run_to_completion("cleanup", load_settings(), DAYS_LATER)

    # Then everything is finished: no records, no claims, no objects
    assert report.done
    assert all(images.get(r.image_id) is None for r in expired)
    assert not any(claim_exists(env, r) for r in expired)
    # and the backup deletes re-sent by the second run are the same jobs (same requestedAt),
    # so the backup worker's idempotency does each once
    bodies = [json.loads(m["Body"]) for m in receive_all(env.queue_urls["backup"])]
    assert len(bodies) == 4
    assert {(b["imageId"], b["requestedAt"]) for b in bodies} == {
        (r.image_id, iso(BASE - timedelta(days=40))) for r in expired
    }


def test_running_twice_is_harmless(env: Resources) -> None:
    seed_image(env, deleted_at=BASE - timedelta(days=40))
    live = seed_image(env)

    first = run_to_completion("cleanup", load_settings(), DAYS_LATER)
    second = run_to_completion("cleanup", load_settings(), DAYS_LATER)

    assert first.counts["records_deleted"] == 1
    assert second.counts["expired_images"] == 0
    assert keys(env) == keys_of(live)
