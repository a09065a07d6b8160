"""The cron function: scheduled starts, stopping near the timeout, continuing from the queue."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from lambdas.cron import handler as cron_handler
from lambdas.shared.clock import iso
from lambdas.shared.errors import InvalidMessageError
from lambdas.shared.images import ImageRecord, ImageRepository
from lambdas.shared.keys import ImagePath
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext, event_from_received

BASE = datetime.now(UTC)
LATER = iso(BASE + timedelta(days=40))


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("cron"))
    return aws


def keys(env: Resources) -> set[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=env.bucket)
    return {obj["Key"] for obj in listing.get("Contents", [])}


def seed_deleted_image(env: Resources) -> ImageRecord:
    path = ImagePath("alice", "trips", f"p{uuid.uuid4().hex[:6]}.jpg")
    record = ImageRecord(
        image_id=uuid.uuid4().hex,
        owner="alice",
        album="trips",
        filename=path.filename,
        bucket=env.bucket,
        original_key=path.original_key,
        created_at=iso(BASE),
    )
    images = ImageRepository(env.tables["images"])
    images.create(record)
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=env.bucket, Key=path.original_key, Body=b"x"
    )
    images.soft_delete(record.image_id, iso(BASE))
    return record


def test_job_stops_near_the_timeout_and_the_continuation_finishes_it(env: Resources) -> None:
    # Given an expired image and an orphan (cleanup takes two steps: expired, then orphans)
    expired = seed_deleted_image(env)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=env.bucket, Key="bob/old/gone.png/original", Body=b"x")

    # When the scheduled start has only 10 s left after its first step (margin is 20 s)
    result = cron_handler.handler(
        {"job": "cleanup", "now": LATER}, FakeLambdaContext(remaining_ms=10_000)
    )

    # Then it stopped cleanly after one step and queued a continuation with its cursor
    assert result["done"] is False
    assert result["steps"] == 1
    assert ImageRepository(env.tables["images"]).get(expired.image_id) is None
    assert "bob/old/gone.png/original" in keys(env)
    [message] = receive_all(env.queue_urls["cron"])
    body = json.loads(message["Body"])
    assert body == {
        "v": 1,
        "job": "cleanup",
        "now": result["now"],
        "cursor": {"phase": "orphans"},
        "step": 2,
    }

    # When the cron queue delivers it to the function (a full invocation's time)
    response = cron_handler.handler(
        event_from_received([message], env.queue_arns["cron"]),
        FakeLambdaContext(remaining_ms=300_000),
    )

    # Then the job is finished, and nothing further was queued
    assert response == {"batchItemFailures": []}
    assert keys(env) == set()
    assert receive_all(env.queue_urls["cron"]) == []


def test_scheduled_run_with_time_finishes_in_one_invocation(env: Resources) -> None:
    seed_deleted_image(env)
    result = cron_handler.handler({"job": "cleanup", "now": LATER}, FakeLambdaContext(300_000))
    assert result["done"] is True
    assert result["counts"]["records_deleted"] == 1
    assert receive_all(env.queue_urls["cron"]) == []


@pytest.mark.parametrize(
    "event",
    [{"job": "vacuum"}, {}, {"job": "cleanup", "now": 12}, {"job": "cleanup", "now": "soon"}],
)
def test_bad_scheduled_input_is_refused_with_a_reason(env: Resources, event: dict) -> None:
    with pytest.raises(InvalidMessageError) as caught:
        cron_handler.handler(event, FakeLambdaContext())
    assert str(caught.value)
    assert receive_all(env.queue_urls["cron"]) == []


def test_bad_continuation_goes_to_the_dlq(env: Resources) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.send_message(
        QueueUrl=env.queue_urls["cron"],
        MessageBody=json.dumps({"v": 1, "job": "vacuum", "now": LATER, "cursor": {}}),
    )
    messages = receive_all(env.queue_urls["cron"])
    response = cron_handler.handler(
        event_from_received(messages, env.queue_arns["cron"]), FakeLambdaContext()
    )
    assert response == {"batchItemFailures": []}
    [dead] = receive_all(env.dlq_urls["cron"])
    assert "job" in dead["MessageAttributes"]["pixflare-reason"]["StringValue"]
