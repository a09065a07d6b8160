"""The variant function: SQS batches of VariantJob -> eight variants (and labels) per image."""

from __future__ import annotations

from typing import Any

from lambdas.shared.deadline import LambdaContextLike
from lambdas.shared.messages import VariantJob
from lambdas.shared.observability import logger, publish_metrics, tracer
from lambdas.shared.worker import QueueWorker
from lambdas.variant.pipeline import process_variant_job, record_variant_failure

worker = QueueWorker(
    name="variant",
    model=VariantJob,
    process=process_variant_job,
    on_permanent_failure=record_variant_failure,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return worker.handle(event, context)
