"""The daily jobs' function: EventBridge starts a job, the cron queue continues it.

EventBridge sends ``{"job": "cleanup" | "analytics" | "backup-sync"}`` (and
``"now"``, an ISO 8601 time, to run as of another moment). A job near the
function's timeout sends its cursor to the cron queue as a CronContinuation,
which arrives here as an SQS record (batch size 1) through the queue-worker runtime.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.cron.registry import run_in_lambda
from lambdas.cron.runner import JOB_NAMES, InvalidTimeError, RunReport, parse_now
from lambdas.shared.config import load_settings
from lambdas.shared.deadline import Deadline, LambdaContextLike
from lambdas.shared.errors import InvalidMessageError
from lambdas.shared.messages import CronContinuation
from lambdas.shared.observability import logger, metrics, publish_metrics
from lambdas.shared.tracing import tracer
from lambdas.shared.worker import JobContext, QueueWorker


def record_run(report: RunReport) -> dict[str, Any]:
    metrics.add_dimension(name="job", value=report.job)
    metrics.add_metric(name="CronSteps", unit=MetricUnit.Count, value=report.steps)
    metrics.add_metric(name="CronFinished", unit=MetricUnit.Count, value=int(report.done))
    return report.to_dict()


def continue_job(job: CronContinuation, ctx: JobContext) -> dict[str, Any]:
    report = run_in_lambda(
        job.job,
        ctx.settings,
        parse_now(job.now),
        ctx.lambda_context,
        cursor=job.cursor,
        first_step=job.step,
    )
    return record_run(report)


worker: QueueWorker[CronContinuation] = QueueWorker(
    name="cron", model=CronContinuation, process=continue_job
)


def is_sqs_event(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return isinstance(records, list) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records
    )


def start_job(event: Any, context: LambdaContextLike) -> dict[str, Any]:
    """A scheduled start: validate the input, then run the job from its first step."""
    if not isinstance(event, dict):
        raise InvalidMessageError("scheduled event must be a JSON object")
    name = event.get("job")
    if name not in JOB_NAMES:
        raise InvalidMessageError(
            f"scheduled event names job {name!r}; expected one of {', '.join(JOB_NAMES)}"
        )
    raw_now = event.get("now")
    if raw_now is not None and not isinstance(raw_now, str):
        raise InvalidMessageError("scheduled event field 'now' must be an ISO 8601 string")
    try:
        now = parse_now(raw_now)
    except InvalidTimeError as err:
        raise InvalidMessageError(f"scheduled event: {err}") from None
    with (
        logger.append_context_keys(job=name),
        Deadline.from_context(context).bound(),
    ):
        report = run_in_lambda(str(name), load_settings(), now, context)
    return record_run(report)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_sqs_event(event):
        return worker.handle(event, context)
    return start_job(event, context)
