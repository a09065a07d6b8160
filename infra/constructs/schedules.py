"""The daily jobs: the cron function, its continuation queue and the EventBridge rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import config
from infra.constructs.queue_worker import QueueWorker


class Schedules(Construct):
    """One function for the three jobs.

    EventBridge invokes it with ``{"job": ...}``; a job near its timeout sends a
    cursor to the continuation queue, which the same function consumes one
    message at a time. Failed scheduled invocations (after the target's retries)
    land in an encrypted, TLS-only SQS dead-letter queue. A job that throws is
    retried by Lambda (asynchronous invocation), then its event lands in the
    on-failure queue, which is alarmed; the continuation queue's own failures go
    to its DLQ through the event source mapping.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: config.AppSettings,
        code: lambda_.Code,
        layers: Sequence[lambda_.ILayerVersion],
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.worker = QueueWorker(
            self,
            "Cron",
            spec=config.CRON,
            code=code,
            layers=layers,
            environment=environment,
        )
        self.function = self.worker.function
        # The function re-queues its own cursor.
        self.worker.queue.grant_send_messages(self.function)

        self.events_dlq = sqs.Queue(
            self,
            "EventsDlq",
            retention_period=Duration.days(config.DLQ_RETENTION_DAYS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )

        # Asynchronous invocations (the EventBridge rules) that still fail after Lambda's
        # retries, or wait too long, are sent here with the event and the error. The
        # destination grants the function's role sqs:SendMessage on it (CDK's own grant).
        self.failure_queue = sqs.Queue(
            self,
            "CronFailures",
            queue_name=f"{Stack.of(self).stack_name}-{config.CRON_FAILURE_QUEUE_SUFFIX}",
            retention_period=Duration.days(config.DLQ_RETENTION_DAYS),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.function.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.failure_queue),
            retry_attempts=config.CRON_ASYNC_RETRY_ATTEMPTS,
            max_event_age=Duration.hours(config.CRON_ASYNC_MAX_EVENT_AGE_HOURS),
        )

        self.rules: dict[str, events.Rule] = {}
        for spec in config.SCHEDULES:
            if spec.needs_queues and not settings.runtime.enable_queues:
                continue
            rule = events.Rule(
                self,
                spec.rule_id,
                description=f"Pixflare daily job: {spec.job}",
                schedule=events.Schedule.expression(settings.schedules[spec.job]),
            )
            rule.add_target(
                targets.LambdaFunction(
                    self.function,
                    event=events.RuleTargetInput.from_object({"job": spec.job}),
                    retry_attempts=config.SCHEDULE_RETRY_ATTEMPTS,
                    max_event_age=Duration.hours(config.SCHEDULE_MAX_EVENT_AGE_HOURS),
                    dead_letter_queue=self.events_dlq,
                )
            )
            self.rules[spec.job] = rule
