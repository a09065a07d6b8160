"""One variant job: from "an original is stored and recorded" to "its variants are ready".

Two stages, each recorded on the image record before the next starts, so a retry
resumes where the last delivery stopped:

1. variants: GetItem the record, GetObject the original, render the eight variants
   (the pure engine), PutObject each at ``{owner}/{album}/{filename}/{variant}``,
   then one conditional UpdateItem marks the record ``ready`` for that original.
   A record already ready for the same original skips this stage.
2. AI (only with ENABLE_AI_CLASSIFICATION): Rekognition labels stored as ``ai``. A
   transient failure retries the job, which finds the variants ready and runs only
   this stage again; a permanent one is recorded as ``ai.error``, variants untouched.
   Its input is the smallest width variant at least AI_IMAGE_WIDTH wide (already
   upright and sRGB; on a retry, fetched from S3), downscaled to AI_IMAGE_WIDTH:
   the same picture as a downscale of the original, without decoding the original
   a second time (which doubles the job's time on a large PNG). The original is
   used only when no variant is that wide.

Every write is idempotent: keys are deterministic (a re-run overwrites identically)
and record updates are conditional on the record existing and not being deleted.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lambdas.shared import aws
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.errors import (
    ConditionFailedError,
    NotFoundError,
    PermanentError,
)
from lambdas.shared.images import MAX_UPLOAD_BYTES, ImageRecord, ImageRepository
from lambdas.shared.keys import VARIANT_NAMES
from lambdas.shared.messages import VariantJob
from lambdas.shared.objects import ImagesBucket, StoredObject
from lambdas.shared.observability import logger
from lambdas.shared.worker import JobContext
from lambdas.variant import ai
from lambdas.variant.engine import VARIANTS, ImageRejected, Rendition, render_variants

VARIANT_CACHE_CONTROL = "public, max-age=31536000, immutable"
# No original can legitimately be larger than the largest upload.
MAX_ORIGINAL_BYTES = MAX_UPLOAD_BYTES
# Time a stage needs to finish once started; with less left, the job is retried
# later rather than cut off half-way by the function timeout. Each stage's calls,
# one after another at the AWS client's shortest timeouts (3 s), and the report margin:
# variants: get the original, put the variants (in parallel), update the record: 10 s;
# AI: detect labels, update the record: 7 s.
VARIANTS_STAGE_SECONDS = aws.seconds_needed(*[aws.AWS_TIMEOUTS[-1]] * 3)
AI_STAGE_SECONDS = aws.seconds_needed(*[aws.AWS_TIMEOUTS[-1]] * 2)
STORE_THREADS = 4
ERROR_TEXT_LIMIT = 1000


@dataclass(frozen=True)
class JobOutcome:
    variants: str  # rendered | already-ready | skipped-deleted | record-deleted
    ai: str  # off | labelled | failed | already-done | skipped


def original_source(record: ImageRecord) -> str:
    """What identifies the record's current original: its ETag, else its sha256."""
    if record.original_etag:
        return record.original_etag
    return f"sha256:{record.sha256}" if record.sha256 else ""


def variants_ready_for_original(record: ImageRecord) -> bool:
    source = original_source(record)
    return (
        record.variants_status == "ready"
        and bool(source)
        and record.variants_source == source
        and set(VARIANT_NAMES) <= set(record.variants_ready)
    )


def variant_record_fields(
    record: ImageRecord,
    renditions: dict[str, Rendition],
    *,
    source: str,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The SET fields that mark ``record`` ready with these renditions."""
    return {
        "variants_status": "ready",
        "variants_ready": list(VARIANT_NAMES),
        "variants": {
            name: {
                "key": record.path.variant_key(name),
                "width": renditions[name].width,
                "height": renditions[name].height,
                "bytes": len(renditions[name].data),
                "content_type": renditions[name].content_type,
            }
            for name in VARIANT_NAMES
        },
        "timings": timings,
        "variants_source": source,
    }


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def ai_input_variant(ai_image_width: int) -> str | None:
    """The narrowest width variant at least ``ai_image_width`` wide, if any."""
    widths = sorted((spec.width, spec.name) for spec in VARIANTS if not spec.cover)
    return next((name for width, name in widths if width >= ai_image_width), None)


def fetch_object(bucket: str, key: str) -> StoredObject:
    """An original or variant, refused (before reading it) over MAX_ORIGINAL_BYTES."""
    return ImagesBucket(bucket).read(key, limit=MAX_ORIGINAL_BYTES)


def fetch_original(settings: Settings, record: ImageRecord) -> StoredObject:
    return fetch_object(record.bucket or settings.require("images_bucket"), record.original_key)


def _put_variant(bucket: str, key: str, rendition: Rendition, image_id: str) -> None:
    ImagesBucket(bucket).put(
        key,
        rendition.data,
        content_type=rendition.content_type,
        cache_control=VARIANT_CACHE_CONTROL,
        image_id=image_id,
    )


def store_variants(bucket: str, record: ImageRecord, renditions: dict[str, Rendition]) -> None:
    """PutObject every rendition (a few at a time); the first failure is raised."""
    with ThreadPoolExecutor(max_workers=STORE_THREADS) as pool:
        futures = [
            pool.submit(
                aws.in_this_context(_put_variant),
                bucket,
                record.path.variant_key(name),
                renditions[name],
                record.image_id,
            )
            for name in VARIANT_NAMES
        ]
        for future in futures:
            future.result()


def render_and_record(
    settings: Settings,
    images: ImageRepository,
    record: ImageRecord,
    original: StoredObject,
    fetch_ms: float,
) -> tuple[ImageRecord | None, dict[str, Rendition]]:
    """Stage 1. Returns the updated record (None when it was deleted meanwhile) and the
    renditions."""
    start = time.perf_counter()
    try:
        renditions = render_variants(original.data, max_pixels=settings.max_image_pixels)
    except ImageRejected as err:
        raise PermanentError(err.reason) from None
    render_ms = _elapsed_ms(start)

    start = time.perf_counter()
    store_variants(record.bucket or settings.require("images_bucket"), record, renditions)
    store_ms = _elapsed_ms(start)

    timings = {"fetch_ms": fetch_ms, "render_ms": render_ms, "store_ms": store_ms}
    source = original.etag or original_source(record)
    fields = variant_record_fields(record, renditions, source=source, timings=timings)
    try:
        # ai describes the original the variants came from: a fresh render starts it over.
        updated = images.update_unless_deleted(
            record.image_id, fields, ["error", "ai"], return_new=True
        )
    except ConditionFailedError:
        # Deleted (or removed) while rendering: the daily cleanup removes its objects.
        logger.info("image deleted while its variants were made; not recorded")
        return None, renditions
    logger.info("variants stored", extra={"timings": timings})
    return updated, renditions


def ai_input(
    settings: Settings,
    record: ImageRecord,
    renditions: dict[str, Rendition] | None,
    original: StoredObject | None,
) -> bytes:
    """The image bytes the AI stage downscales (see the module docstring)."""
    name = ai_input_variant(settings.ai_image_width)
    if name is not None and renditions is not None:
        return renditions[name].data
    if name is not None and name in record.variants:
        bucket = record.bucket or settings.require("images_bucket")
        return fetch_object(bucket, record.variants[name].key).data
    if original is not None:
        return original.data
    return fetch_original(settings, record).data


def run_ai_stage(
    settings: Settings,
    images: ImageRepository,
    record: ImageRecord,
    renditions: dict[str, Rendition] | None = None,
    original: StoredObject | None = None,
) -> str:
    """Stage 2. TransientError propagates (the job is retried and resumes here)."""
    at = iso(utcnow())
    try:
        value = ai.classify(settings, ai_input(settings, record, renditions, original), at=at)
        outcome = "labelled"
    except PermanentError as err:
        logger.warning("image labelling failed for good", extra={"reason": str(err)})
        value = ai.ai_failure(str(err), at=at)
        outcome = "failed"
    try:
        images.record_ai(record.image_id, value)
    except ConditionFailedError:
        logger.info("image deleted or no longer ready; labels not recorded")
        return "skipped"
    return outcome


def process_variant_job(job: VariantJob, ctx: JobContext) -> JobOutcome:
    settings = ctx.settings
    images = ImageRepository(settings.require("images_table"))
    record = images.get(job.image_id)
    if record is None:
        raise NotFoundError(f"image {job.image_id} has no record")
    if record.owner != job.owner:
        raise PermanentError(f"image {job.image_id} does not belong to {job.owner}")
    if record.deleted_at:
        logger.info("image is deleted; nothing to do")
        return JobOutcome("skipped-deleted", "skipped")

    original: StoredObject | None = None
    renditions: dict[str, Rendition] | None = None
    if variants_ready_for_original(record):
        variants_outcome = "already-ready"
    else:
        ctx.deadline.require(VARIANTS_STAGE_SECONDS, "the variants stage")
        start = time.perf_counter()
        original = fetch_original(settings, record)
        updated, renditions = render_and_record(
            settings, images, record, original, _elapsed_ms(start)
        )
        if updated is None:
            return JobOutcome("record-deleted", "skipped")
        record, variants_outcome = updated, "rendered"

    if not settings.enable_ai_classification:
        ai_outcome = "off"
    elif record.ai is not None:
        ai_outcome = "already-done"
    else:
        ctx.deadline.require(AI_STAGE_SECONDS, "the AI stage")
        ai_outcome = run_ai_stage(settings, images, record, renditions, original)
    outcome = JobOutcome(variants_outcome, ai_outcome)
    logger.info("variant job finished", extra={"variants": outcome.variants, "ai": outcome.ai})
    return outcome


def record_variant_failure(job: VariantJob, err: PermanentError, ctx: JobContext) -> None:
    """The permanent-failure hook: the record shows ``failed`` and why."""
    images = ImageRepository(ctx.settings.require("images_table"))
    try:
        # Only the image this job names, for the owner it names.
        images.update_for_owner(
            job.image_id,
            job.owner,
            {"variants_status": "failed", "error": str(err)[:ERROR_TEXT_LIMIT]},
        )
    except ConditionFailedError:
        logger.warning("no record to mark failed", extra={"reason": str(err)})
