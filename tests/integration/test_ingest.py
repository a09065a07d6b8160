"""The ingest function under moto: objects put straight into the bucket (moto delivers
S3's own event notifications to the ingest queue, as the stack configures it), and the
upload command's originals, take one path to a record and queued jobs."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from PIL import Image

from lambdas.ingest.handler import handler
from lambdas.shared import originals
from lambdas.shared.config import load_settings
from lambdas.shared.images import ImageRecord, ImageRepository, NameTakenError
from lambdas.shared.keys import ImagePath
from lambdas.shared.originals import reserve_upload, store_upload
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env
from tests.support.events import (
    FakeLambdaContext,
    event_from_received,
    s3_object_created,
    sqs_event,
    sqs_record,
)

OWNER = "alice"


def jpeg(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("ingest"))
    return aws


@pytest.fixture
def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def put(s3: Any, env: Resources, key: str, data: bytes, **extra: Any) -> str:
    return str(s3.put_object(Bucket=env.bucket, Key=key, Body=data, **extra)["ETag"]).strip('"')


def deliver(env: Resources) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What S3 sent to the ingest queue, handed to the handler as Lambda's poller does."""
    messages = receive_all(env.queue_urls["ingest"])
    event = event_from_received(messages, env.queue_arns["ingest"])
    return handler(event, FakeLambdaContext()), messages


def variant_jobs(env: Resources) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in receive_all(env.queue_urls["variant"])]


def record_at(env: Resources, claim: str) -> ImageRecord:
    images = ImageRepository(env.tables["images"])
    owner, album, filename = claim.split("/")
    image_id = images.claimed_paths([ImagePath(owner, album, filename)])[claim]
    record = images.get(image_id)
    assert record is not None
    return record


def object_exists(s3: Any, env: Resources, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=env.bucket, Prefix=key).get("KeyCount"))


def test_an_object_put_alone_is_recorded_and_its_variant_job_queued(
    env: Resources, s3: Any
) -> None:
    # Given an original written straight into the bucket, as `aws s3 sync` would
    etag = put(s3, env, "alice/trip/beach.jpg/original", jpeg())
    # When S3's notifications (the configuration's test event, then the object's) arrive
    response, messages = deliver(env)
    # Then both are acknowledged, and the image has a record and a variant job
    assert response == {"batchItemFailures": []}
    assert any("s3:TestEvent" in m["Body"] for m in messages)
    record = record_at(env, "alice/trip/beach.jpg")
    assert record.original_etag == etag == record.ingested_etag
    assert record.content_type == "image/jpeg"
    assert record.variants_status == "pending"
    assert record.to_status()["upload_status"] == "received"
    assert variant_jobs(env) == [{"v": 1, "imageId": record.image_id, "owner": OWNER}]
    assert receive_all(env.dlq_urls["ingest"]) == []


def test_the_same_object_announced_twice_queues_one_job(env: Resources, s3: Any) -> None:
    etag = put(s3, env, "alice/trip/a.jpg/original", jpeg())
    deliver(env)
    assert len(variant_jobs(env)) == 1
    # When S3 delivers the same object's event again (at-least-once delivery)
    body = json.dumps(s3_object_created(env.bucket, "alice/trip/a.jpg/original", etag=etag))
    response = handler(sqs_event([sqs_record(body)]), FakeLambdaContext())
    # Then nothing more is queued
    assert response == {"batchItemFailures": []}
    assert variant_jobs(env) == []


def test_a_replaced_original_renders_again(env: Resources, s3: Any) -> None:
    first = put(s3, env, "alice/trip/a.jpg/original", jpeg(colour=(1, 2, 3)))
    deliver(env)
    [job] = variant_jobs(env)
    images = ImageRepository(env.tables["images"])
    images.update(job["imageId"], {"variants_status": "ready", "variants_ready": ["w128"]})
    # When the same key is written again with other bytes
    second = put(s3, env, "alice/trip/a.jpg/original", jpeg(colour=(250, 250, 250)))
    deliver(env)
    # Then the same record describes the new original, pending again, with a new job
    record = record_at(env, "alice/trip/a.jpg")
    assert record.image_id == job["imageId"]
    assert first != second == record.original_etag
    assert (record.variants_status, record.variants_ready) == ("pending", [])
    assert variant_jobs(env) == [job]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"%PDF-1.7 not an image at all" * 4, "not an image"),
    ],
)
def test_a_refused_file_is_recorded_with_its_reason_and_removed(
    env: Resources, s3: Any, data: bytes, reason: str
) -> None:
    put(s3, env, "alice/trip/bad.jpg/original", data)
    response, _ = deliver(env)
    assert response == {"batchItemFailures": []}
    record = record_at(env, "alice/trip/bad.jpg")
    assert record.variants_status == "failed"
    assert record.error is not None and reason in record.error
    assert not object_exists(s3, env, "alice/trip/bad.jpg/original")
    assert variant_jobs(env) == []


def test_an_oversize_original_is_refused_by_the_ingest_itself(
    env: Resources, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A presigned POST's size limit is S3's to enforce (moto does not): the ingest checks
    # again. The limit is lowered so the test needs no 100 MB object.
    monkeypatch.setattr(originals, "MAX_UPLOAD_BYTES", 1000)
    put(s3, env, "alice/trip/big.jpg/original", jpeg(400, 300))
    deliver(env)
    record = record_at(env, "alice/trip/big.jpg")
    assert record.variants_status == "failed"
    assert record.error is not None and "over the 1000 byte limit" in record.error
    assert not object_exists(s3, env, "alice/trip/big.jpg/original")


@pytest.mark.parametrize(
    "key",
    ["alice/../etc/original", "alice/trip/extra/dir/original", "alice/trip/-rf/original"],
)
def test_an_object_outside_the_key_layout_is_removed_and_never_recorded(
    env: Resources, s3: Any, key: str
) -> None:
    put(s3, env, key, jpeg())
    response, _ = deliver(env)
    assert response == {"batchItemFailures": []}
    assert not object_exists(s3, env, key)
    assert ImageRepository(env.tables["images"]).list_for_owner(OWNER, limit=10)[0] == []
    assert variant_jobs(env) == []


def test_an_upload_reserved_through_the_api_is_completed_by_its_object(
    env: Resources, s3: Any
) -> None:
    # Given a reservation (as POST /v1/uploads makes) and the browser's object with its id
    reserved = reserve_upload(
        load_settings(),
        owner=OWNER,
        album="web",
        filename="cat.jpg",
        content_type="image/jpeg",
        size=1000,
    )
    assert reserved.to_status()["upload_status"] == "awaiting"
    put(s3, env, reserved.original_key, jpeg(), Metadata={"image-id": reserved.image_id})
    deliver(env)
    # Then the reserved record is the one completed
    record = record_at(env, "alice/web/cat.jpg")
    assert record.image_id == reserved.image_id
    assert record.upload_expires_at is None
    assert variant_jobs(env) == [{"v": 1, "imageId": reserved.image_id, "owner": OWNER}]


def test_the_upload_command_and_the_event_queue_one_job_between_them(
    env: Resources, s3: Any
) -> None:
    uploaded = store_upload(load_settings(), jpeg(), owner=OWNER, album="trip", filename="c.jpg")
    assert uploaded.record.ingested_etag == uploaded.record.original_etag != ""
    response, _ = deliver(env)
    assert response == {"batchItemFailures": []}
    assert variant_jobs(env) == [{"v": 1, "imageId": uploaded.record.image_id, "owner": OWNER}]


def test_an_event_for_another_bucket_is_not_acted_on(env: Resources, s3: Any) -> None:
    s3.create_bucket(Bucket="someone-elses")
    s3.put_object(Bucket="someone-elses", Key="alice/trip/x.jpg/original", Body=b"")
    body = json.dumps(s3_object_created("someone-elses", "alice/trip/x.jpg/original"))
    response = handler(sqs_event([sqs_record(body)]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    # Then the other bucket's object is left alone and nothing is recorded
    assert s3.head_object(Bucket="someone-elses", Key="alice/trip/x.jpg/original")
    assert ImageRepository(env.tables["images"]).list_for_owner(OWNER, limit=10)[0] == []


def test_a_malformed_message_goes_to_the_dlq_and_spares_its_batch_mate(
    env: Resources, s3: Any
) -> None:
    put(s3, env, "alice/trip/ok.jpg/original", jpeg())
    messages = receive_all(env.queue_urls["ingest"])
    records = [
        sqs_record(m["Body"], message_id=m["MessageId"], receipt_handle=m["ReceiptHandle"])
        for m in messages
    ]
    records.append(sqs_record('{"Records": [{"eventSource": "aws:s3"}]}', message_id="bad"))
    response = handler(sqs_event(records), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert record_at(env, "alice/trip/ok.jpg").ingested_etag
    [rejected] = receive_all(env.dlq_urls["ingest"])
    assert (
        "ingest message rejected" in rejected["MessageAttributes"]["pixflare-reason"]["StringValue"]
    )


def reserve(filename: str = "r.jpg") -> ImageRecord:
    return reserve_upload(
        load_settings(),
        owner=OWNER,
        album="web",
        filename=filename,
        content_type="image/jpeg",
        size=1000,
    )


def test_a_reservation_holds_its_name_until_its_window_ends(env: Resources) -> None:
    images = ImageRepository(env.tables["images"])
    first = reserve()
    # While its upload may still come, the name is taken
    with pytest.raises(NameTakenError, match="already exists"):
        reserve()
    # When its window has passed with no upload, the next reservation takes the name over
    images.update(first.image_id, {"upload_expires_at": "2000-01-01T00:00:00Z"})
    second = reserve()
    assert second.image_id != first.image_id
    assert images.get(first.image_id) is None
    assert record_at(env, "alice/web/r.jpg").image_id == second.image_id


def test_a_received_image_is_never_taken_over(env: Resources, s3: Any) -> None:
    first = reserve()
    put(s3, env, first.original_key, jpeg(), Metadata={"image-id": first.image_id})
    deliver(env)
    ImageRepository(env.tables["images"]).update(
        first.image_id, {"upload_expires_at": "2000-01-01T00:00:00Z"}
    )
    with pytest.raises(NameTakenError):
        reserve()
    assert record_at(env, "alice/web/r.jpg").image_id == first.image_id


def test_a_deleted_images_name_says_so(env: Resources) -> None:
    first = reserve()
    ImageRepository(env.tables["images"]).soft_delete(first.image_id, "2026-12-01T00:00:00Z")
    with pytest.raises(NameTakenError, match=f"belongs to a deleted image \\({first.image_id}\\)"):
        reserve()
