"""Failing dependencies, end to end: faults injected into the botocore calls of every step
of the variant and backup pipelines, a function running out of time mid-batch, a crash
between "variants written" and "record updated", duplicate and out-of-order deliveries,
and a backup destination that is down. Retries are driven through the real (moto)
queues with backoff 0; afterwards every job is done (or in the DLQ, and a redrive
finishes it) and nothing is left half-done.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from PIL import Image
from pydantic import SecretStr

from lambdas.backup import handler as backup_handler
from lambdas.shared import worker
from lambdas.shared.config import load_settings
from lambdas.shared.destinations import DestinationCredentials
from lambdas.shared.images import ImageRecord, ImageRepository
from lambdas.shared.keys import VARIANT_NAMES
from lambdas.shared.observability import logger
from lambdas.shared.originals import store_upload
from lambdas.variant import handler as variant_handler
from pixflare.operations.backup_destinations import DestinationRequest, configure_destination
from tests.support.aws_resources import REGION, Resources
from tests.support.env import ALLOW_PRIVATE_ENDPOINTS, use_env
from tests.support.events import FakeLambdaContext
from tests.support.faults import (
    INTERNAL,
    SLOW_DOWN,
    THROTTLE,
    FaultPlan,
    FlakyProxy,
    ProvisionedThroughputExceeded,
    drive_queue,
    expire_in_progress,
    inject,
    queue_depth,
    redrive,
)
from tests.support.s3_target import S3Target

OWNER = "rel"
VARIANT_BATCH = 5
BACKUP_BATCH = 10


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # A failed record is visible again at once, so retries run in the same test.
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("variant"))
    return aws


def small_image(seed: int, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    mode = "RGBA" if fmt == "PNG" else "RGB"
    colour = (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256, 255)[: len(mode)]
    Image.new(mode, (48 + seed, 32 + seed), colour).save(out, fmt)
    return out.getvalue()


def upload_images(count: int, owner: str = OWNER) -> list[ImageRecord]:
    settings = load_settings()
    return [
        store_upload(
            settings,
            small_image(i, "PNG" if i % 2 else "JPEG"),
            owner=owner,
            album="a",
            filename=f"img-{i}.{'png' if i % 2 else 'jpg'}",
        ).record
        for i in range(count)
    ]


def run_variants(env: Resources, **kwargs: Any) -> Any:
    return drive_queue(
        env.queue_urls["variant"],
        env.queue_arns["variant"],
        variant_handler.handler,
        batch_size=VARIANT_BATCH,
        between_rounds=lambda: expire_in_progress(env.tables["idempotency"]),
        **kwargs,
    )


def bucket_keys(env: Resources) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env.bucket):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def assert_variants_settled(env: Resources, uploaded: list[ImageRecord]) -> None:
    """Every image ready with its 9 objects, nothing else in the bucket, no work left over."""
    images = ImageRepository(env.tables["images"])
    expected_keys: list[str] = []
    for upload in uploaded:
        record = images.get(upload.image_id)
        assert record is not None
        assert (record.variants_status, record.error) == ("ready", None)
        assert record.variants_ready == list(VARIANT_NAMES)
        expected_keys += [upload.original_key] + [
            upload.path.variant_key(name) for name in VARIANT_NAMES
        ]
    keys = bucket_keys(env)
    assert sorted(keys) == sorted(expected_keys)
    assert len(keys) == len(set(keys)) == 9 * len(uploaded)
    assert queue_depth(env.queue_urls["variant"]) == 0
    assert queue_depth(env.dlq_urls["variant"]) == 0
    statuses = [
        item["status"]["S"]
        for item in boto3.client("dynamodb", region_name=REGION).scan(
            TableName=env.tables["idempotency"]
        )["Items"]
    ]
    assert statuses and set(statuses) == {"COMPLETED"}


# Every AWS call a variant job makes: the record, the original, the eight variants, the
# record update, and the idempotency marker's put / update.
# Every AWS call a variant job makes (the record, the original, the eight variants, the
# record update, the idempotency marker), each with one kind of fault, so every step and
# every kind is covered without a full cross product.
VARIANT_STEP_FAULTS = {
    "dynamodb.GetItem": ("throttled", THROTTLE),
    "s3.GetObject": ("slow-past-timeout", "timeout"),
    "s3.PutObject": ("slow-down-503", SLOW_DOWN),
    "dynamodb.UpdateItem": ("5xx", INTERNAL),
    "dynamodb.PutItem": ("throughput-exceeded", ProvisionedThroughputExceeded),
}


@pytest.mark.parametrize(
    ("step", "kind"),
    [(step, kind) for step, (_, kind) in VARIANT_STEP_FAULTS.items()],
    ids=[f"{step}-{name}" for step, (name, _) in VARIANT_STEP_FAULTS.items()],
)
def test_variant_pipeline_recovers_from_faults_on_every_step(
    env: Resources, step: str, kind: Any
) -> None:
    # Given two uploads
    uploaded = upload_images(2)

    # When one step fails half of the time (at most 4 faults) while the queue is worked
    with inject(FaultPlan((step,), rate=0.5, max_faults=4, kind=kind)) as plan:
        first = run_variants(env)
    assert sum(plan.injected.values()) > 0, "the fault never fired"

    # Then anything that ran out of receives is in the DLQ, and a redrive finishes it
    dead = queue_depth(env.dlq_urls["variant"])
    assert redrive(env.dlq_urls["variant"], env.queue_urls["variant"]) == dead
    second = run_variants(env)
    assert len(first.done) + len(second.done) >= 2
    assert_variants_settled(env, uploaded)


def test_faults_everywhere_at_once_still_settle(env: Resources) -> None:
    uploaded = upload_images(4)
    plan = FaultPlan(("s3.*", "dynamodb.*"), rate=0.15, max_faults=10, kind=SLOW_DOWN, seed=7)
    with inject(plan):
        run_variants(env)
    assert sum(plan.injected.values()) >= 3
    redrive(env.dlq_urls["variant"], env.queue_urls["variant"])
    run_variants(env)
    assert_variants_settled(env, uploaded)


class DwindlingContext(FakeLambdaContext):
    """A Lambda context whose remaining time drops by ``step_ms`` per original fetched."""

    def __init__(self, start_ms: int, step_ms: int) -> None:
        super().__init__(remaining_ms=start_ms)
        self.step_ms = step_ms

    def spend(self, **_: Any) -> None:
        self.remaining_ms -= self.step_ms


def test_function_running_out_of_time_mid_batch(env: Resources) -> None:
    from lambdas.shared import aws

    uploaded = upload_images(5)
    # Given an invocation whose time runs low after two images
    context = DwindlingContext(start_ms=30_000, step_ms=11_000)
    aws.s3().meta.events.register("after-call.s3.GetObject", context.spend)

    # When one batch runs in it
    result = run_variants(env, context=context, max_rounds=1)

    # Then the first two are done and the rest are handed back, not cut off half-way
    assert len(result.done) == 2 and result.retried == 3
    images = ImageRepository(env.tables["images"])
    statuses = sorted(images.get(u.image_id).variants_status for u in uploaded)  # type: ignore[union-attr]
    assert statuses == ["pending", "pending", "pending", "ready", "ready"]
    assert len(bucket_keys(env)) == 5 + 2 * 8
    # And the next invocation (fresh time) finishes them
    aws.s3().meta.events.unregister("after-call.s3.GetObject", context.spend)
    run_variants(env)
    assert_variants_settled(env, uploaded)


def _images_table_update(table: str) -> Any:
    def only_if(params: dict[str, Any]) -> bool:
        return json.loads(params["body"] or b"{}").get("TableName") == table

    return only_if


def test_crash_between_variants_written_and_record_updated(env: Resources) -> None:
    uploaded = upload_images(3)
    # Given the process dies right before the first image-record update of the batch
    plan = FaultPlan(
        ("dynamodb.UpdateItem",),
        max_faults=1,
        kind="crash",
        only_if=_images_table_update(env.tables["images"]),
    )
    with inject(plan):
        crashed = run_variants(env, max_rounds=1)

    # Then the whole invocation came back (Lambda deletes nothing from a crashed batch)
    assert plan.injected["dynamodb.UpdateItem"] == 1
    assert crashed.done == [] and crashed.retried == 3
    images = ImageRepository(env.tables["images"])
    assert {images.get(u.image_id).variants_status for u in uploaded} == {"pending"}  # type: ignore[union-attr]
    # Its variants are written, the record not: a half state only while the job is queued
    assert len(bucket_keys(env)) == 3 + 8
    assert queue_depth(env.queue_urls["variant"]) == 3

    # When the redelivery runs: the same keys are overwritten, the record updated once
    run_variants(env)
    assert_variants_settled(env, uploaded)


def test_duplicate_and_out_of_order_variant_deliveries(env: Resources) -> None:
    uploaded = upload_images(4)
    sqs = boto3.client("sqs", region_name=REGION)
    # Given every job sent twice more, newest first
    for record in reversed(uploaded):
        body = json.dumps({"v": 1, "imageId": record.image_id, "owner": OWNER})
        for _ in range(2):
            sqs.send_message(QueueUrl=env.queue_urls["variant"], MessageBody=body)
    puts: list[str] = []

    def count_put(params: dict[str, Any], **_: Any) -> None:
        puts.append(params["Key"])

    from lambdas.shared import aws

    aws.s3().meta.events.register("provide-client-params.s3.PutObject", count_put)
    result = run_variants(env)

    # Then all twelve deliveries are acknowledged, and each image rendered exactly once
    assert len(result.done) == 12
    assert len(puts) == len(set(puts)) == 4 * 8
    assert_variants_settled(env, uploaded)


# -- backup ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target() -> Iterator[S3Target]:
    with S3Target(bucket="reliability-backups", auth=True) as server:
        yield server


@pytest.fixture
def backup_env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    # The targets are loopback HTTP servers: the operator's opt-in allows them.
    use_env(monkeypatch, {**aws.env("backup"), **ALLOW_PRIVATE_ENDPOINTS})
    return aws


def set_destination(target: S3Target, owner: str, endpoint: str | None = None) -> None:
    configure_destination(
        load_settings(),
        DestinationRequest(
            owner=owner,
            bucket=target.bucket,
            endpoint_url=endpoint or target.endpoint,
            prefix="rel",
            path_style=True,
            encrypt=True,
            credentials=DestinationCredentials(
                target.access_key_id, SecretStr(target.secret_access_key)
            ),
        ),
        check=False,
    )


def run_backups(env: Resources, **kwargs: Any) -> Any:
    return drive_queue(
        env.queue_urls["backup"],
        env.queue_arns["backup"],
        backup_handler.handler,
        batch_size=BACKUP_BATCH,
        remaining_ms=60_000,
        between_rounds=lambda: expire_in_progress(env.tables["idempotency"]),
        **kwargs,
    )


def assert_backups_synced(env: Resources, target: S3Target, uploaded: list[ImageRecord]) -> None:
    images = ImageRepository(env.tables["images"])
    for upload in uploaded:
        record = images.get(upload.image_id)
        assert record is not None
        assert record.backup_status == "synced", record.backup
        assert "last_error" not in (record.backup or {})
    owners = {u.owner for u in uploaded}
    stored = {k for k in target.objects() if k.split("/")[1] in owners}
    assert stored == {f"rel/{u.owner}/a/{u.filename}" for u in uploaded}
    assert queue_depth(env.queue_urls["backup"]) == 0
    assert queue_depth(env.dlq_urls["backup"]) == 0


# Every call of ours a backup job makes: the destination and image records, the
# credentials' and the data key's KMS calls, the original, the record update and the
# idempotency marker. The destination itself is behind FlakyProxy below.
BACKUP_STEP_FAULTS = {
    "dynamodb.GetItem": ProvisionedThroughputExceeded,
    "kms.Decrypt": THROTTLE,
    "kms.GenerateDataKey": INTERNAL,
    "s3.GetObject": "timeout",
    "dynamodb.UpdateItem": INTERNAL,
    "dynamodb.PutItem": THROTTLE,
}


@pytest.mark.parametrize("step", list(BACKUP_STEP_FAULTS))
def test_backup_pipeline_recovers_from_faults_on_every_step(
    backup_env: Resources, target: S3Target, step: str
) -> None:
    owner = f"b-{step.replace('.', '-').lower()}"
    set_destination(target, owner)
    uploaded = upload_images(2, owner=owner)
    plan = FaultPlan((step,), rate=0.5, max_faults=4, kind=BACKUP_STEP_FAULTS[step], seed=3)
    with inject(plan, services=("s3", "dynamodb", "sqs", "kms")):
        run_backups(backup_env)
    assert sum(plan.injected.values()) > 0, "the fault never fired"
    redrive(backup_env.dlq_urls["backup"], backup_env.queue_urls["backup"])
    run_backups(backup_env)
    assert_backups_synced(backup_env, target, uploaded)


@pytest.mark.parametrize(
    ("down_for", "to_dlq"),
    # Each receive makes up to 2 connection attempts (the remote client's max_attempts):
    # down for 2 receives recovers on the third; down for longer than 3 receives (the
    # "ten minutes" outage, past 30 s + 60 s of backoff) outlives maxReceiveCount.
    [(4, False), (100, True)],
)
def test_backup_destination_down_then_back(
    backup_env: Resources,
    target: S3Target,
    down_for: int,
    to_dlq: bool,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    owner = f"down-{down_for}"
    with FlakyProxy(target.port) as proxy:
        set_destination(target, owner, endpoint=proxy.endpoint)
        uploaded = upload_images(2, owner=owner)
        # Given the destination refuses connections for a while
        proxy.set_down(down_for)
        # Four rounds: three receives, and the fourth finds SQS moved them to the DLQ
        run_backups(backup_env, max_rounds=4)
        images = ImageRepository(backup_env.tables["images"])
        dead = queue_depth(backup_env.dlq_urls["backup"])
        if to_dlq:
            # Then the jobs wait in the DLQ, and the records say why
            assert dead == 2
            for upload in uploaded:
                pending = images.get(upload.image_id)
                assert pending is not None and pending.backup_status == "pending"
                assert pending.backup and pending.backup.get("last_error")
            # When it is back and an operator redrives the DLQ
            proxy.set_down(0)
            assert redrive(backup_env.dlq_urls["backup"], backup_env.queue_urls["backup"]) == 2
        else:
            assert dead == 0
        run_backups(backup_env)
        assert proxy.refused >= min(down_for, 6)
        assert_backups_synced(backup_env, target, uploaded)
    # Every log line (formatted as the function prints it, extras included), everything
    # printed on stdout/stderr (metrics), errors included: the secret is in none of them.
    printed = capfd.readouterr()
    logs = "\n".join(logger.registered_formatter.format(r) for r in caplog.records)
    assert "Could not connect" in logs or "Connection was closed" in logs
    assert target.secret_access_key not in logs + printed.out + printed.err
