"""The backup queue's Lambda handler: the queue-worker runtime over the backup jobs."""

from __future__ import annotations

from typing import Any

from lambdas.backup.pipeline import process_backup, record_permanent_failure
from lambdas.shared.deadline import LambdaContextLike
from lambdas.shared.messages import BackupJob
from lambdas.shared.observability import logger, publish_metrics, tracer
from lambdas.shared.worker import QueueWorker

worker: QueueWorker[BackupJob] = QueueWorker(
    name="backup",
    model=BackupJob,
    process=process_backup,
    on_permanent_failure=record_permanent_failure,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return worker.handle(event, context)
