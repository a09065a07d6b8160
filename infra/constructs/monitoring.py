"""Alarms, the topic they notify, and a dashboard over every queue and function.

The widgets are written by hand (a few ``GraphWidget``s) rather than with
cdk-monitoring-constructs: that library would be a new jsii dependency for what
is a handful of lines here.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import config
from infra.constructs.queue_worker import QueueWorker

ALARM_PERIOD = Duration.minutes(5)
DEPTH_PERIOD = Duration.minutes(1)
JOBS_PERIOD = Duration.hours(1)
CLOUDWATCH = "cloudwatch.amazonaws.com"
HALF_WIDTH = 12  # dashboard grid units (24 across): two graphs a row


class Monitoring(Construct):
    """DLQ depth > 0, age of the oldest message, function errors, failed daily jobs.

    Every alarm notifies (on ALARM and on OK) one SNS topic that is always part of
    the stack, encrypted with a customer managed key that CloudWatch may use (the
    AWS-managed SNS key does not let CloudWatch publish). ``alarm_email`` only adds
    an e-mail subscription; an operator subscribes a pager to the topic from the
    ``AlarmTopicArn`` output.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        workers: Sequence[QueueWorker],
        functions: Sequence[tuple[str, lambda_.IFunction]] = (),
        http_api: apigw.IHttpApi | None = None,
        extra_dlqs: Sequence[tuple[str, sqs.IQueue]] = (),
        cron_failures: sqs.IQueue | None = None,
        cron_jobs: Sequence[str] = (),
        provider_alarm_service: str | None = None,
        backup_refusal_alarm: bool = False,
        alarm_email: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        topic_name = f"{stack.stack_name}-{config.ALARM_TOPIC_SUFFIX}"
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Pixflare: encrypts the alarm topic",
            enable_key_rotation=True,
        )
        key.grant(iam.ServicePrincipal(CLOUDWATCH), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=topic_name,
            display_name="Pixflare alarms",
            master_key=key,
            enforce_ssl=True,
        )
        # The TLS-only policy replaces SNS's default topic policy, so CloudWatch is named
        # explicitly: alarms of this account and region only (confused deputy).
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal(CLOUDWATCH)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        # The topic's ARN built from its fixed name (not a Ref), so the embedded local
        # stack, which creates no SNS topic, can still resolve the stack's outputs.
        self.topic_arn = stack.format_arn(service="sns", resource=topic_name)

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
                    width=HALF_WIDTH,
                    title=f"{name}: queue",
                    left=[
                        worker.queue.metric_approximate_number_of_messages_visible(label="visible"),
                        worker.dlq.metric_approximate_number_of_messages_visible(
                            label="DLQ visible"
                        ),
                    ],
                    right=[
                        worker.queue.metric_approximate_age_of_oldest_message(
                            label="oldest message (s)", statistic="Maximum"
                        )
                    ],
                )
            )
            widgets.append(self._function_widget(name, worker.function))
        for name, function in functions:
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=ALARM_PERIOD, statistic="Sum"),
                threshold=0,
                periods=1,
                description=f"{name} function: invocations failed (timeouts or crashes)",
            )
            widgets.append(self._function_widget(name, function))
        if http_api is not None:
            server_errors = http_api.metric_server_error(period=ALARM_PERIOD, statistic="Sum")
            self._alarm(
                "Api5xx",
                server_errors,
                threshold=0,
                periods=1,
                description="HTTP API: 5xx responses (the function failed, timed out or "
                "was throttled)",
            )
            widgets.append(
                cloudwatch.GraphWidget(
                    width=HALF_WIDTH,
                    title="HTTP API: requests",
                    left=[
                        http_api.metric_count(label="requests"),
                        http_api.metric_client_error(label="4xx"),
                        http_api.metric_server_error(label="5xx"),
                    ],
                    right=[http_api.metric_latency(label="latency avg (ms)")],
                )
            )
        for name, dlq in extra_dlqs:
            self._dlq_alarm(name, dlq)

        failures: list[cloudwatch.IMetric] = [
            dlq.metric_approximate_number_of_messages_visible(
                label=f"{name} visible", period=DEPTH_PERIOD, statistic="Maximum"
            )
            for name, dlq in extra_dlqs
        ]
        if cron_failures is not None:
            self._alarm(
                "CronFailedJobs",
                cron_failures.metric_approximate_number_of_messages_visible(
                    period=DEPTH_PERIOD, statistic="Maximum"
                ),
                threshold=0,
                periods=1,
                description="a daily job failed after Lambda's retries (or started too "
                "late); its event and error are on the cron on-failure queue",
            )
            failures.insert(
                0,
                cron_failures.metric_approximate_number_of_messages_visible(
                    label="failed jobs (on-failure queue)",
                    period=DEPTH_PERIOD,
                    statistic="Maximum",
                ),
            )
        if provider_alarm_service is not None:
            self._alarm(
                "ProviderNotConfigured",
                cloudwatch.Metric(
                    namespace=config.METRICS_NAMESPACE,
                    metric_name=config.PROVIDER_NOT_CONFIGURED_METRIC,
                    dimensions_map={"service": provider_alarm_service},
                    period=ALARM_PERIOD,
                    statistic="Sum",
                ),
                threshold=0,
                periods=1,
                description="the custom-domain provider is not configured yet (store the "
                "Cloudflare API token in its secret); domain checks cannot proceed",
            )
        if backup_refusal_alarm:
            # One alarm per emitter: their EMF dimension sets differ (the sync's has `job`).
            for alarm_id, dimensions in (
                ("BackupDestinationRefused", {"service": config.BACKUP.service}),
                (
                    "BackupSyncDestinationRefused",
                    {"service": config.CRON.service, "job": "backup-sync"},
                ),
            ):
                self._alarm(
                    alarm_id,
                    cloudwatch.Metric(
                        namespace=config.METRICS_NAMESPACE,
                        metric_name=config.BACKUP_DESTINATION_REFUSED_METRIC,
                        dimensions_map=dimensions,
                        period=ALARM_PERIOD,
                        statistic="Sum",
                    ),
                    threshold=0,
                    periods=1,
                    description="an owner's backup destination was refused at use (not "
                    "https, or a private address); its backups fail until the owner changes it",
                )
        if cron_jobs:
            widgets.append(
                cloudwatch.GraphWidget(
                    width=HALF_WIDTH,
                    title="daily jobs: runs finished (left) and steps (right)",
                    left=[self._cron_metric(config.CRON_FINISHED_METRIC, job) for job in cron_jobs],
                    right=[self._cron_metric(config.CRON_STEPS_METRIC, job) for job in cron_jobs],
                )
            )
        if failures:
            widgets.append(
                cloudwatch.GraphWidget(
                    width=HALF_WIDTH, title="daily jobs: failures", left=failures
                )
            )

        dashboard = cloudwatch.Dashboard(self, "Dashboard")
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                alarms=list(self.alarms), title="Pixflare alarms", width=2 * HALF_WIDTH
            )
        )
        for i in range(0, len(widgets), 2):
            dashboard.add_widgets(*widgets[i : i + 2])

    @staticmethod
    def _function_widget(name: str, function: lambda_.IFunction) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            width=HALF_WIDTH,
            title=f"{name}: function",
            left=[
                function.metric_invocations(label="invocations"),
                function.metric_errors(label="errors"),
                function.metric_throttles(label="throttles"),
            ],
            right=[
                function.metric_duration(label="duration avg (ms)"),
                function.metric_duration(label="duration max (ms)", statistic="Maximum"),
            ],
        )

    @staticmethod
    def _cron_metric(metric_name: str, job: str) -> cloudwatch.Metric:
        """The cron function's EMF metrics carry Powertools' service dimension and the job."""
        return cloudwatch.Metric(
            namespace=config.METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"service": config.CRON.service, "job": job},
            period=JOBS_PERIOD,
            statistic="Sum",
            label=job,
        )

    def _dlq_alarm(self, alarm_id: str, dlq: sqs.IQueue) -> None:
        self._alarm(
            alarm_id,
            dlq.metric_approximate_number_of_messages_visible(
                period=DEPTH_PERIOD, statistic="Maximum"
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
        action = actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
