"""Alarms (and a small dashboard) over every queue and function."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.queue_worker import QueueWorker

ALARM_PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    """DLQ depth > 0, age of the oldest message, function errors.

    With an ``alarm_email`` the alarms notify an SNS topic encrypted with a
    customer managed key that CloudWatch may use (the AWS-managed SNS key does
    not let CloudWatch publish).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        workers: Sequence[QueueWorker],
        extra_dlqs: Sequence[tuple[str, sqs.IQueue]] = (),
        alarm_email: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic: sns.Topic | None = None
        if alarm_email:
            key = kms.Key(
                self,
                "AlarmTopicKey",
                description="Pixflare: encrypts the alarm topic",
                enable_key_rotation=True,
            )
            key.grant(
                iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                "kms:Decrypt",
                "kms:GenerateDataKey*",
            )
            self.topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        self.alarms: list[cloudwatch.Alarm] = []
        widgets: list[cloudwatch.IWidget] = []
        for worker in workers:
            name = worker.spec.key
            self._dlq_alarm(f"{name}Dlq", worker.dlq)
            self._alarm(
                f"{name}OldestMessage",
                worker.queue.metric_approximate_age_of_oldest_message(
                    period=ALARM_PERIOD, statistic="Maximum"
                ),
                threshold=worker.spec.oldest_message_alarm_seconds,
                periods=2,
                description=f"{name} queue: a message has waited longer than "
                f"{worker.spec.oldest_message_alarm_seconds} s",
            )
            self._alarm(
                f"{name}Errors",
                worker.function.metric_errors(period=ALARM_PERIOD, statistic="Sum"),
                threshold=0,
                periods=1,
                description=f"{name} function: invocations failed (timeouts or crashes)",
            )
            widgets.append(
                cloudwatch.GraphWidget(
                    title=f"{name}: queue",
                    left=[
                        worker.queue.metric_approximate_number_of_messages_visible(),
                        worker.dlq.metric_approximate_number_of_messages_visible(
                            label="DLQ visible"
                        ),
                    ],
                    right=[worker.queue.metric_approximate_age_of_oldest_message()],
                )
            )
            widgets.append(
                cloudwatch.GraphWidget(
                    title=f"{name}: function",
                    left=[worker.function.metric_invocations(), worker.function.metric_errors()],
                    right=[worker.function.metric_duration()],
                )
            )
        for name, dlq in extra_dlqs:
            self._dlq_alarm(name, dlq)

        dashboard = cloudwatch.Dashboard(self, "Dashboard")
        for i in range(0, len(widgets), 2):
            dashboard.add_widgets(*widgets[i : i + 2])

    def _dlq_alarm(self, alarm_id: str, dlq: sqs.IQueue) -> None:
        self._alarm(
            alarm_id,
            dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=0,
            periods=1,
            description=f"{alarm_id}: messages are waiting in a dead-letter queue",
        )

    def _alarm(
        self,
        alarm_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        periods: int,
        description: str,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id[0].upper() + alarm_id[1:],
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Pixflare: {description}",
        )
        if self.topic is not None:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
