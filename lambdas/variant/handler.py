"""The variant function: SQS batches of VariantJob -> eight variants (and labels) per image."""

from __future__ import annotations

import contextlib
from typing import Any

from lambdas.shared.deadline import LambdaContextLike
from lambdas.shared.errors import ConditionFailedError, ConfigError
from lambdas.shared.images import ImageRepository
from lambdas.shared.messages import VariantJob
from lambdas.shared.observability import logger, publish_metrics
from lambdas.shared.tracing import tracer
from lambdas.shared.worker import JobContext, QueueWorker, config_error_reason
from lambdas.variant.pipeline import ERROR_TEXT_LIMIT, process_variant_job, record_variant_failure


def record_config_error(job: VariantJob, err: ConfigError, ctx: JobContext) -> None:
    """`pixflare status` shows what stopped the variants (still pending); the variants'
    next write clears it."""
    images = ImageRepository(ctx.settings.require("images_table"))
    with contextlib.suppress(ConditionFailedError):  # not this owner's, or not pending
        images.update(
            job.image_id,
            {"error": config_error_reason("variant", err)[:ERROR_TEXT_LIMIT]},
            condition="#owner = :owner AND #vs = :pending",
            condition_names={"#owner": "owner", "#vs": "variants_status"},
            condition_values={":owner": job.owner, ":pending": "pending"},
        )


worker = QueueWorker(
    name="variant",
    model=VariantJob,
    process=process_variant_job,
    on_permanent_failure=record_variant_failure,
    on_config_error=record_config_error,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return worker.handle(event, context)
