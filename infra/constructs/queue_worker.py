"""A queue, its dead-letter queue and the Lambda function that consumes it.

Used for the variant, backup, domain and ingest workers and for the cron function's
continuation queue. The numbers come from a :class:`infra.config.WorkerSpec`; the
mapping's MaximumConcurrency from the stack's concurrency budget
(:attr:`infra.config.AppSettings.concurrency`). Queue names are
``{stackName}-{key}`` and ``{stackName}-{key}-dlq``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import config

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64


_RETENTION = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
}


def log_retention() -> logs.RetentionDays:
    return _RETENTION[config.LOG_RETENTION_DAYS]


def create_function(
    scope: Construct,
    construct_id: str,
    *,
    spec: config.FunctionSpec,
    code: lambda_.Code,
    layers: Sequence[lambda_.ILayerVersion],
    environment: Mapping[str, str],
) -> lambda_.Function:
    """A function on the project's target: arm64, Python 3.12, JSON logs, X-Ray."""
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=log_retention(),
        removal_policy=RemovalPolicy.DESTROY,
    )
    env = {**config.powertools_env(spec), **{k: v for k, v in environment.items() if v != ""}}
    return lambda_.Function(
        scope,
        construct_id,
        description=f"Pixflare {spec.key} "
        + ("worker" if isinstance(spec, config.WorkerSpec) else "function"),
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=spec.handler,
        code=code,
        layers=list(layers),
        timeout=Duration.seconds(spec.timeout_seconds),
        memory_size=spec.memory_mb,
        environment=env,
        logging_format=lambda_.LoggingFormat.JSON,
        log_group=log_group,
        tracing=lambda_.Tracing.ACTIVE,
    )


class QueueWorker(Construct):
    """Source queue + DLQ (with a redrive-allow policy) + consuming function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: config.WorkerSpec,
        code: lambda_.Code,
        layers: Sequence[lambda_.ILayerVersion],
        environment: Mapping[str, str] | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        stack = Stack.of(self)
        if max_concurrency is None:
            # Derived from the stack's concurrency budget (infra/config.py).
            settings = getattr(stack, "settings", None)
            budget = settings.concurrency if isinstance(settings, config.AppSettings) else {}
            max_concurrency = budget.get(spec.key, config.MIN_MAPPING_CONCURRENCY)
        self.max_concurrency = max_concurrency
        # A fixed name lets the DLQ's redrive-allow policy name its source queue by
        # ARN without a reference (source -> DLQ -> source would be a cycle).
        queue_name = f"{stack.stack_name}-{spec.key}"
        source_arn = stack.format_arn(service="sqs", resource=queue_name)

        self.dlq = sqs.Queue(
            self,
            "Dlq",
            queue_name=f"{queue_name}-dlq",
            retention_period=Duration.days(config.DLQ_RETENTION_DAYS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(self, "SourceRef", source_arn)],
            ),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=queue_name,
            visibility_timeout=Duration.seconds(spec.visibility_timeout_seconds),
            retention_period=Duration.days(config.SOURCE_RETENTION_DAYS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=config.MAX_RECEIVE_COUNT, queue=self.dlq
            ),
        )

        env = {
            config.ENV_QUEUE_URL: self.queue.queue_url,
            config.ENV_DLQ_URL: self.dlq.queue_url,
            spec.queue_url_env: self.queue.queue_url,
            **(environment or {}),
        }
        self.function = create_function(
            self, "Function", spec=spec, code=code, layers=layers, environment=env
        )

        batching_window = (
            Duration.seconds(spec.batching_window_seconds) if spec.batching_window_seconds else None
        )
        self.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=spec.batch_size,
                report_batch_item_failures=True,
                max_batching_window=batching_window,
                max_concurrency=max_concurrency,
            )
        )
        # Invalid messages go to the DLQ at once, without waiting for maxReceiveCount.
        self.dlq.grant_send_messages(self.function)
        # Backoff: the runtime sets the visibility of a failed record before reporting it.
        self.queue.grant(self.function, "sqs:ChangeMessageVisibility")
