"""The queue-worker runtime every SQS handler uses.

One place decides what happens to a record, from our error types alone:

- the body does not parse or match its schema -> sent to the queue's DLQ at once
  (an operator can see it there), acknowledged here;
- PermanentError -> the job's failure hook records the reason, acknowledged, never retried;
- ConfigError (a missing or bad setting of the deployment) -> the job's config-error hook
  records it on the record the job concerns, and the message goes to the DLQ at once
  with its reason (``pixflare-error-kind: config``), acknowledged: retrying cannot help
  until the setting is fixed, and then a redrive finishes the job;
- anything else (TransientError, unknown exceptions) -> the message's visibility is set
  to an exponential backoff from its receive count, and it is reported as a batch item
  failure; after maxReceiveCount SQS moves it to the DLQ.

Each job runs under Powertools idempotency keyed on the job itself, so a redelivered
message (or a duplicate send) does nothing twice. One record's fate never touches
its batch-mates: Powertools' BatchProcessor returns partial batch responses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from lambdas.shared import aws
from lambdas.shared.config import Settings, load_settings
from lambdas.shared.deadline import Deadline, LambdaContextLike
from lambdas.shared.errors import (
    ConfigError,
    InvalidMessageError,
    PermanentError,
    PixflareError,
    TransientError,
    aws_errors,
)
from lambdas.shared.messages import M, parse_message
from lambdas.shared.observability import logger, metrics

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 900
# A record is not started unless its first AWS call can be made (at its shortest
# timeouts, and reported after): aws.MIN_CALL_SECONDS, 4 s.
MIN_SECONDS_TO_START = aws.MIN_CALL_SECONDS
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
REASON_ATTRIBUTE_LIMIT = 1000
# The DLQ message attributes the runtime sets (contract: docs/operations.md).
REASON_ATTRIBUTE = "pixflare-reason"
ERROR_KIND_ATTRIBUTE = "pixflare-error-kind"
SOURCE_MESSAGE_ATTRIBUTE = "pixflare-source-message-id"
ERROR_KIND_INVALID = "invalid"
ERROR_KIND_CONFIG = "config"


def config_error_fix(queue: str) -> str:
    """What to do about a worker's configuration error (``queue``: its `pixflare dlq` name)."""
    return f"fix the setting, then `pixflare dlq redrive {queue}`"


def config_error_reason(queue: str, err: ConfigError) -> str:
    """The one-line DLQ reason of a job stopped by a configuration error."""
    return f"configuration: {err}; {config_error_fix(queue)}"


def backoff_seconds(receive_count: int, *, base: int | None = None, cap: int | None = None) -> int:
    """30 s x 2^(receive count - 1), capped (SQS allows at most 12 h; we stay far below)."""
    base = BACKOFF_BASE_SECONDS if base is None else base
    cap = BACKOFF_CAP_SECONDS if cap is None else cap
    exponent = max(0, min(receive_count - 1, 20))
    return int(min(cap, base * (2**exponent)))


@dataclass
class JobContext:
    """What a job's logic may know about its delivery."""

    settings: Settings
    message_id: str
    receive_count: int
    lambda_context: LambdaContextLike | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> Deadline:
        """When this invocation ends (read from the context each time); no context
        (a job run outside Lambda): no deadline."""
        return Deadline.from_context(self.lambda_context)


Process = Callable[[M, JobContext], Any]
OnPermanentFailure = Callable[[M, PermanentError, JobContext], None]
OnConfigError = Callable[[M, ConfigError, JobContext], None]


class QueueWorker(Generic[M]):  # noqa: UP046  (M is shared with the job hooks)
    """Binds a message model to its logic; ``handle`` is the body of a Lambda handler."""

    def __init__(
        self,
        *,
        name: str,
        model: type[M],
        process: Process[M],
        on_permanent_failure: OnPermanentFailure[M] | None = None,
        on_config_error: OnConfigError[M] | None = None,
        idempotent: bool = True,
    ) -> None:
        self.name = name
        self.model = model
        self.process = process
        self.on_permanent_failure = on_permanent_failure
        # Records a configuration error on the record the job concerns (best effort).
        self.on_config_error = on_config_error
        self.idempotent = idempotent
        self._runner: Callable[..., Any] | None = None
        self._runner_table: str | None = None
        self._config: IdempotencyConfig | None = None
        _WORKERS.append(self)

    # -- entry point -------------------------------------------------------------------
    def handle(self, event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        settings = load_settings()
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

        def record_handler(record: SQSRecord) -> None:
            self._handle_record(record, settings, context)

        # Every AWS call of this invocation ends before the function's own timeout.
        with Deadline.from_context(context).bound():
            response = process_partial_response(
                event=event,
                record_handler=record_handler,
                processor=processor,
                context=context,  # type: ignore[arg-type]
            )
        return dict(response)

    # -- one record --------------------------------------------------------------------
    def _handle_record(
        self, record: SQSRecord, settings: Settings, context: LambdaContextLike
    ) -> None:
        receive_count = int(record.attributes.approximate_receive_count or 1)
        job_context = JobContext(settings, record.message_id, receive_count, context)
        with logger.append_context_keys(messageId=record.message_id, receiveCount=receive_count):
            try:
                job = parse_message(self.model, record.body)
            except InvalidMessageError as err:
                self._reject(record, settings, str(err))
                return
            with logger.append_context_keys(**job.log_keys()):
                try:
                    job_context.deadline.require(MIN_SECONDS_TO_START, "this record")
                    self._run(job, job_context)
                except PermanentError as err:
                    self._give_up(job, err, job_context)
                    return
                except ConfigError as err:
                    self._stop_for_config(record, job, err, job_context, receive_count)
                    return
                except Exception as err:
                    self._retry_later(record, settings, err, receive_count)
                    raise
                metrics.add_metric(name="JobSucceeded", unit=MetricUnit.Count, value=1)
                logger.info("job done", extra={"outcome": "succeeded"})

    def _run(self, job: M, job_context: JobContext) -> None:
        table = job_context.settings.idempotency_table
        if not (self.idempotent and table):
            self.process(job, job_context)
            return
        runner = self._idempotent_runner(table)
        if job_context.lambda_context is not None and self._config is not None:
            # Lets an in-progress record expire with this invocation if it is cut off.
            self._config.register_lambda_context(job_context.lambda_context)  # type: ignore[arg-type]
        runner(job=job, key={"key": job.idempotency_key()}, job_context=job_context)

    def _idempotent_runner(self, table: str) -> Callable[..., Any]:
        if self._runner is None or self._runner_table != table:
            persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=aws.dynamodb())
            config = IdempotencyConfig(
                event_key_jmespath="key", expires_after_seconds=IDEMPOTENCY_TTL_SECONDS
            )
            process = self.process

            def run(*, job: Any, key: dict[str, str], job_context: JobContext) -> None:
                process(job, job_context)

            self._runner = idempotent_function(
                run,
                data_keyword_argument="key",
                persistence_store=persistence,
                config=config,
                key_prefix=f"pixflare.{self.name}",
            )
            self._runner_table = table
            self._config = config
        return self._runner

    # -- outcomes ----------------------------------------------------------------------
    def _send_to_dlq(self, record: SQSRecord, dlq_url: str, reason: str, kind: str) -> None:
        """The record's body to the DLQ, with why and what kind of failure (the contract)."""
        with aws_errors(f"send {kind} message to the DLQ"):
            aws.sqs().send_message(
                QueueUrl=dlq_url,
                MessageBody=record.body or "(empty body)",
                MessageAttributes={
                    REASON_ATTRIBUTE: {
                        "DataType": "String",
                        "StringValue": reason[:REASON_ATTRIBUTE_LIMIT],
                    },
                    ERROR_KIND_ATTRIBUTE: {"DataType": "String", "StringValue": kind},
                    SOURCE_MESSAGE_ATTRIBUTE: {
                        "DataType": "String",
                        "StringValue": record.message_id,
                    },
                },
            )

    def _reject(self, record: SQSRecord, settings: Settings, reason: str) -> None:
        """Invalid message: to the DLQ now, where an operator sees it; no retries."""
        dlq_url = settings.require("dlq_url")
        try:
            self._send_to_dlq(record, dlq_url, reason, ERROR_KIND_INVALID)
        except PermanentError:
            # The DLQ refused it (too large with our attributes, say): let SQS's own
            # redrive move it after maxReceiveCount receives instead. Nothing is lost.
            metrics.add_metric(name="MessageRejected", unit=MetricUnit.Count, value=1)
            logger.warning(
                "invalid message; DLQ send refused, leaving it to the redrive policy",
                extra={"reason": reason},
            )
            raise TransientError(f"invalid message not moved: {reason}") from None
        metrics.add_metric(name="MessageRejected", unit=MetricUnit.Count, value=1)
        logger.warning(
            "invalid message sent to the DLQ", extra={"reason": reason, "outcome": "rejected"}
        )

    def _stop_for_config(
        self,
        record: SQSRecord,
        job: M,
        err: ConfigError,
        job_context: JobContext,
        receive_count: int,
    ) -> None:
        """A setting is missing or bad: recorded where the job's record shows it, and the
        message to the DLQ at once with a reason naming it; a redrive once it is fixed
        finishes the job. If the DLQ cannot take it, SQS's redrive policy moves it after
        maxReceiveCount receives instead (raised here, so it is retried until then)."""
        reason = config_error_reason(self.name, err)
        metrics.add_metric(name="JobConfigError", unit=MetricUnit.Count, value=1)
        if self.on_config_error is not None:
            try:
                self.on_config_error(job, err, job_context)
            except Exception as hook_err:  # the DLQ reason still names the setting
                logger.warning(
                    "configuration error not recorded on its record",
                    extra={"reason": f"{type(hook_err).__name__}: {hook_err}"},
                )
        try:
            self._send_to_dlq(
                record, job_context.settings.require("dlq_url"), reason, ERROR_KIND_CONFIG
            )
        except PixflareError as send_err:
            logger.error(
                "configuration error; DLQ send failed, leaving it to the redrive policy",
                extra={"reason": reason, "sendError": str(send_err), "outcome": "retry"},
            )
            self._retry_later(record, job_context.settings, err, receive_count)
            raise TransientError(f"configuration error, message not moved: {err}") from None
        logger.error(
            "configuration error; message sent to the DLQ",
            extra={"reason": reason, "outcome": "config-error"},
        )

    def _give_up(self, job: M, err: PermanentError, job_context: JobContext) -> None:
        if self.on_permanent_failure is not None:
            self.on_permanent_failure(job, err, job_context)
        metrics.add_metric(name="JobFailedPermanently", unit=MetricUnit.Count, value=1)
        logger.warning("job failed permanently", extra={"reason": str(err), "outcome": "failed"})

    def _retry_later(
        self, record: SQSRecord, settings: Settings, err: Exception, receive_count: int
    ) -> None:
        delay = backoff_seconds(receive_count, base=settings.backoff_base_seconds)
        metrics.add_metric(name="JobRetried", unit=MetricUnit.Count, value=1)
        logger.warning(
            "job failed, will retry",
            extra={
                "reason": f"{type(err).__name__}: {err}",
                "outcome": "retry",
                "backoffSeconds": delay,
            },
        )
        queue_url = settings.queue_url or _queue_url_from_arn(record.event_source_arn)
        try:
            with aws_errors("set backoff visibility"):
                aws.sqs().change_message_visibility(
                    QueueUrl=queue_url,
                    ReceiptHandle=record.receipt_handle,
                    VisibilityTimeout=delay,
                )
        except Exception as visibility_err:  # the record is retried either way
            logger.warning("could not set backoff", extra={"reason": str(visibility_err)})

    def reset(self) -> None:
        self._runner = None
        self._runner_table = None
        self._config = None


def _queue_url_from_arn(arn: str | None) -> str:
    if not arn:
        raise TransientError("QUEUE_URL is not set and the record names no queue")
    name = arn.rsplit(":", 1)[-1]
    with aws_errors("look up queue url"):
        return str(aws.sqs().get_queue_url(QueueName=name)["QueueUrl"])


_WORKERS: list[QueueWorker[Any]] = []


def reset_workers() -> None:
    """Forget cached idempotency layers (tests and the local stack point clients elsewhere)."""
    for worker in _WORKERS:
        worker.reset()
