"""The variant function under moto: uploads go through store_upload, jobs come off the real
(moto) queue, and the handler's results are read back from S3 and DynamoDB."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from PIL import Image

from lambdas.shared import aws, worker
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import load_settings
from lambdas.shared.images import ImageRecord, ImageRepository
from lambdas.shared.keys import VARIANT_NAMES
from lambdas.shared.messages import VariantJob
from lambdas.shared.originals import store_upload
from lambdas.variant import pipeline
from lambdas.variant.handler import handler
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext, event_from_received
from tests.support.faults import SLOW_DOWN, THROTTLE, FaultPlan, inject

OWNER = "alice"
ALBUM = "trip"
INVALID_IMAGE_FORMAT = ("InvalidImageFormatException", 400, "Request has invalid image format")


def jpeg(
    width: int = 320, height: int = 200, colour: tuple[int, int, int] = (200, 80, 40)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=90)
    return out.getvalue()


def png_with_alpha(width: int = 300, height: int = 300) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 120, 240, 128)).save(out, "PNG")
    return out.getvalue()


# Starts like a JPEG (so the upload sniffs it as one) but does not decode.
CORRUPT = b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("variant"))
    return aws


@pytest.fixture
def images(env: Resources) -> ImageRepository:
    return ImageRepository(env.tables["images"])


@pytest.fixture
def variant_puts(env: Resources) -> list[str]:
    """Keys of every PutObject the handler makes for a variant (uploads' originals excluded)."""
    keys: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if not params["Key"].endswith("/original"):
            keys.append(params["Key"])

    aws.s3().meta.events.register("provide-client-params.s3.PutObject", hook)
    return keys


def upload(data: bytes, filename: str) -> ImageRecord:
    return store_upload(load_settings(), data, owner=OWNER, album=ALBUM, filename=filename).record


def deliver(env: Resources, expected: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Receive what is on the variant queue and hand it to the handler, as Lambda's poller does."""
    messages = receive_all(env.queue_urls["variant"])
    assert len(messages) == expected
    event = event_from_received(messages, env.queue_arns["variant"])
    return handler(event, FakeLambdaContext()), messages


def message_for(messages: list[dict[str, Any]], image_id: str) -> str:
    return next(m["MessageId"] for m in messages if image_id in m["Body"])


def assert_variants_stored(env: Resources, record: ImageRecord) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    assert record.variants_status == "ready"
    assert record.variants_ready == list(VARIANT_NAMES)
    assert record.error is None
    assert set(record.variants) == set(VARIANT_NAMES)
    for name, info in record.variants.items():
        assert info.key == f"{OWNER}/{ALBUM}/{record.filename}/{name}"
        head = s3.head_object(Bucket=env.bucket, Key=info.key)
        assert head["ContentType"] == info.content_type
        assert head["ContentLength"] == info.bytes
        assert head["CacheControl"] == "public, max-age=31536000, immutable"
        body = s3.get_object(Bucket=env.bucket, Key=info.key)["Body"].read()
        with Image.open(io.BytesIO(body)) as im:
            assert im.size == (info.width, info.height)
            assert Image.MIME[im.format] == info.content_type
    listed = s3.list_objects_v2(Bucket=env.bucket, Prefix=record.path.prefix)
    assert len(listed["Contents"]) == 1 + len(VARIANT_NAMES)
    assert record.variants_source == record.original_etag
    assert set(record.timings) == {"fetch_ms", "render_ms", "store_ms"}


def test_batch_of_five_with_one_corrupt_image(env: Resources, images: ImageRepository) -> None:
    # Given five uploads, one of which does not decode
    good = [
        upload(jpeg(640, 480), "one.jpg"),
        upload(jpeg(200, 900, (0, 0, 255)), "two.jpg"),
        upload(png_with_alpha(), "three.png"),
        upload(jpeg(2600, 1300), "four.jpg"),
    ]
    corrupt = upload(CORRUPT, "broken.jpg")

    # When the batch is delivered
    response, _ = deliver(env, expected=5)

    # Then nothing is retried: the corrupt image is a permanent failure
    assert response == {"batchItemFailures": []}
    for uploaded in good:
        record = images.get(uploaded.image_id)
        assert record is not None
        assert_variants_stored(env, record)
        assert record.ai is None  # AI classification is off by default
    failed = images.get(corrupt.image_id)
    assert failed is not None
    assert failed.variants_status == "failed"
    assert failed.error
    assert failed.variants_ready == []
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=env.bucket, Prefix=failed.path.prefix
    )
    assert [o["Key"] for o in listed["Contents"]] == [failed.original_key]


def test_geometry_and_formats_are_recorded(env: Resources, images: ImageRepository) -> None:
    wide = upload(jpeg(2600, 1300), "wide.jpg")
    clear = upload(png_with_alpha(300, 300), "clear.png")
    deliver(env, expected=2)

    wide_record = images.get(wide.image_id)
    clear_record = images.get(clear.image_id)
    assert wide_record is not None and clear_record is not None
    sizes = {n: (v.width, v.height) for n, v in wide_record.variants.items()}
    assert sizes["w1024"] == (1024, 512)
    assert sizes["w2048"] == (2048, 1024)
    assert sizes["thumb"] == (128, 128)
    assert sizes["og-image"] == (1200, 630)
    # A PNG keeps its format (and alpha); og-image is always JPEG.
    assert clear_record.variants["w256"].content_type == "image/png"
    assert clear_record.variants["og-image"].content_type == "image/jpeg"
    assert (clear_record.variants["w2048"].width, clear_record.variants["w2048"].height) == (
        300,
        300,
    )


def test_transient_s3_failure_retries_only_that_record(
    env: Resources, images: ImageRepository
) -> None:
    # Given two uploads, and S3 answering SlowDown for one original
    fine = upload(jpeg(), "fine.jpg")
    slow = upload(jpeg(), "slow.jpg")
    plan = FaultPlan(
        targets=("s3.GetObject",),
        kind=SLOW_DOWN,
        only_if=lambda params: params["url_path"].endswith(slow.original_key),
    )

    # When the batch is delivered
    with inject(plan, services=("s3",)):
        response, messages = deliver(env, expected=2)

    # Then only that record is reported for retry, and its image stays pending
    assert plan.injected["s3.GetObject"] == 1
    slow_message = message_for(messages, slow.image_id)
    assert response == {"batchItemFailures": [{"itemIdentifier": slow_message}]}
    slow_record = images.get(slow.image_id)
    assert slow_record is not None
    assert slow_record.variants_status == "pending"
    assert slow_record.error is None
    fine_record = images.get(fine.image_id)
    assert fine_record is not None
    assert fine_record.variants_status == "ready"


def test_redelivery_of_a_processed_job_is_harmless(
    env: Resources,
    images: ImageRepository,
    variant_puts: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uploaded = upload(jpeg(), "again.jpg")
    deliver(env, expected=1)
    assert len(variant_puts) == len(VARIANT_NAMES)
    first = images.get(uploaded.image_id)
    assert first is not None

    # When the same job arrives again (a duplicate send, a lost acknowledgement)
    sqs = boto3.client("sqs", region_name=REGION)
    body = VariantJob(imageId=uploaded.image_id, owner=OWNER).to_body()
    sqs.send_message(QueueUrl=env.queue_urls["variant"], MessageBody=body)
    response, _ = deliver(env, expected=1)

    # Then it is acknowledged without writing anything
    assert response == {"batchItemFailures": []}
    assert len(variant_puts) == len(VARIANT_NAMES)

    # And after the idempotency record is gone (it expires after a day), the record itself
    # says the variants are ready for this original: still nothing is rewritten.
    ddb = boto3.client("dynamodb", region_name=REGION)
    for item in ddb.scan(TableName=env.tables["idempotency"])["Items"]:
        ddb.delete_item(TableName=env.tables["idempotency"], Key={"id": item["id"]})
    sqs.send_message(QueueUrl=env.queue_urls["variant"], MessageBody=body)
    response, _ = deliver(env, expected=1)
    assert response == {"batchItemFailures": []}
    assert len(variant_puts) == len(VARIANT_NAMES)
    assert images.get(uploaded.image_id) == first


def test_job_for_a_missing_record_is_acknowledged(env: Resources, images: ImageRepository) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    missing = "0" * 32
    body = VariantJob(imageId=missing, owner=OWNER).to_body()
    sqs.send_message(QueueUrl=env.queue_urls["variant"], MessageBody=body)

    response, _ = deliver(env, expected=1)

    # Then it is not retried, not sent to the DLQ, and no record springs into being
    assert response == {"batchItemFailures": []}
    assert receive_all(env.dlq_urls["variant"]) == []
    assert images.get(missing) is None


def test_soft_deleted_image_is_skipped(
    env: Resources, images: ImageRepository, variant_puts: list[str]
) -> None:
    uploaded = upload(jpeg(), "gone.jpg")
    images.soft_delete(uploaded.image_id, iso(utcnow()))

    response, _ = deliver(env, expected=1)

    assert response == {"batchItemFailures": []}
    assert variant_puts == []
    record = images.get(uploaded.image_id)
    assert record is not None
    assert record.variants_status == "pending"
    assert record.deleted_at


def test_job_naming_another_owner_does_not_touch_the_image(
    env: Resources, images: ImageRepository, variant_puts: list[str]
) -> None:
    uploaded = upload(jpeg(), "mine.jpg")
    receive_all(env.queue_urls["variant"])  # drop the genuine job; it stays in flight
    sqs = boto3.client("sqs", region_name=REGION)
    forged = VariantJob(imageId=uploaded.image_id, owner="mallory").to_body()
    sqs.send_message(QueueUrl=env.queue_urls["variant"], MessageBody=forged)

    response, _ = deliver(env, expected=1)

    assert response == {"batchItemFailures": []}
    assert variant_puts == []
    record = images.get(uploaded.image_id)
    assert record is not None
    assert (record.variants_status, record.error) == ("pending", None)


def test_oversized_original_is_refused_before_reading(
    env: Resources, images: ImageRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "MAX_ORIGINAL_BYTES", 1000)
    uploaded = upload(jpeg(640, 480), "big.jpg")
    assert uploaded.bytes > 1000

    response, _ = deliver(env, expected=1)

    assert response == {"batchItemFailures": []}
    record = images.get(uploaded.image_id)
    assert record is not None
    assert record.variants_status == "failed"
    assert record.error is not None and "over the 1000" in record.error


@pytest.fixture
def ai_on(env: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, {"ENABLE_AI_CLASSIFICATION": "true", "AI_MAX_LABELS": "5"})
    return env


def test_ai_labels_are_stored_when_enabled(ai_on: Resources, images: ImageRepository) -> None:
    requests: list[dict[str, Any]] = []
    aws.rekognition().meta.events.register(
        "provide-client-params.rekognition.DetectLabels",
        lambda params, **_: requests.append(dict(params)),
    )
    uploaded = upload(jpeg(1600, 1200), "labelled.jpg")

    response, _ = deliver(ai_on, expected=1)

    assert response == {"batchItemFailures": []}
    record = images.get(uploaded.image_id)
    assert record is not None
    assert_variants_stored(ai_on, record)
    assert record.ai is not None
    assert record.ai["model"] == "rekognition"
    assert record.ai["labels"][0]["name"] == "Mobile Phone"  # moto's canned answer
    assert 0 < record.ai["labels"][0]["confidence"] <= 1
    assert "dominant_colors" in record.ai and record.ai["at"]
    # Rekognition saw a small JPEG, with our limits
    (request,) = requests
    with Image.open(io.BytesIO(request["Image"]["Bytes"])) as small:
        assert (small.format, small.width) == ("JPEG", 384)
    assert request["MaxLabels"] == 5
    assert request["MinConfidence"] == pytest.approx(10.0)


def test_ai_transient_failure_retries_only_the_ai_stage(
    ai_on: Resources,
    images: ImageRepository,
    variant_puts: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Backoff of zero so the retry is visible at once instead of after 30 s.
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)
    uploaded = upload(jpeg(), "flaky-ai.jpg")
    plan = FaultPlan(targets=("rekognition.DetectLabels",), kind=THROTTLE, max_faults=1)
    fetched: list[str] = []
    aws.s3().meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: fetched.append(params["Key"])
    )

    # When Rekognition is throttled on the first delivery
    with inject(plan, services=("rekognition",)):
        response, messages = deliver(ai_on, expected=1)
        # Then the record is retried, with its variants already stored and recorded
        assert response == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
        after_first = images.get(uploaded.image_id)
        assert after_first is not None
        assert after_first.variants_status == "ready"
        assert after_first.ai is None
        assert len(variant_puts) == len(VARIANT_NAMES)
        assert fetched == [uploaded.original_key]

        # When the retry arrives
        response, retried = deliver(ai_on, expected=1)

    # Then only the AI stage ran again: no variant was rewritten, and the labels landed
    assert retried[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert response == {"batchItemFailures": []}
    assert plan.injected["rekognition.DetectLabels"] == 1
    assert plan.calls["rekognition.DetectLabels"] == 2
    assert len(variant_puts) == len(VARIANT_NAMES)
    # and the retry read the small w512 variant for labelling, not the original
    assert fetched == [uploaded.original_key, uploaded.path.variant_key("w512")]
    record = images.get(uploaded.image_id)
    assert record is not None
    assert record.variants == after_first.variants
    assert record.ai is not None and record.ai["labels"]


def test_ai_permanent_failure_keeps_variants_ready(
    ai_on: Resources, images: ImageRepository
) -> None:
    uploaded = upload(jpeg(), "unlabelable.jpg")
    plan = FaultPlan(targets=("rekognition.DetectLabels",), kind=INVALID_IMAGE_FORMAT)

    with inject(plan, services=("rekognition",)):
        response, _ = deliver(ai_on, expected=1)

    assert response == {"batchItemFailures": []}
    record = images.get(uploaded.image_id)
    assert record is not None
    assert_variants_stored(ai_on, record)
    assert record.ai is not None
    assert "InvalidImageFormatException" in record.ai["error"]
    assert "labels" not in record.ai
