"""The ingest function: S3 event notifications (via SQS) -> image records and jobs."""

from __future__ import annotations

from typing import Any

from lambdas.ingest.pipeline import process_notification
from lambdas.shared.deadline import LambdaContextLike
from lambdas.shared.messages import S3Notification
from lambdas.shared.observability import logger, publish_metrics
from lambdas.shared.tracing import tracer
from lambdas.shared.worker import QueueWorker

worker = QueueWorker(name="ingest", model=S3Notification, process=process_notification)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return worker.handle(event, context)
