"""The backup queue's Lambda handler: the queue-worker runtime over the backup jobs."""

from __future__ import annotations

import contextlib
from typing import Any

from lambdas.backup.pipeline import LAST_ERROR_LIMIT, process_backup, record_permanent_failure
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.deadline import LambdaContextLike
from lambdas.shared.errors import ConditionFailedError, ConfigError
from lambdas.shared.images import ImageRepository
from lambdas.shared.messages import BackupJob
from lambdas.shared.observability import logger, publish_metrics
from lambdas.shared.tracing import tracer
from lambdas.shared.worker import JobContext, QueueWorker, config_error_reason


def record_config_error(job: BackupJob, err: ConfigError, ctx: JobContext) -> None:
    """`pixflare status ID --json` shows it as ``backup.last_error``; a sync clears it."""
    images = ImageRepository(ctx.settings.require("images_table"))
    record = images.get(job.image_id)
    if record is None or record.owner != job.owner:
        return  # a job naming another owner's image must not touch that image
    backup = {
        **record.backup,
        "last_error": config_error_reason("backup", err)[:LAST_ERROR_LIMIT],
        "last_error_at": iso(utcnow()),
    }
    with contextlib.suppress(ConditionFailedError):  # its backup was deleted meanwhile
        images.update_backup(job.image_id, {"backup": backup})


worker: QueueWorker[BackupJob] = QueueWorker(
    name="backup",
    model=BackupJob,
    process=process_backup,
    on_permanent_failure=record_permanent_failure,
    on_config_error=record_config_error,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return worker.handle(event, context)
