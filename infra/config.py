"""Every name and number the CDK app uses, in one place.

The runtime settings (variable, context key, default, bounds, meaning) are
declared once, in ``lambdas/shared/config.py``; context values (``cdk synth -c
key=value`` or cdk.json) are parsed through that model here, so a bad value fails
the synth with the key's name in the message, and each function's environment is
rendered from it. docs/internals.md lists the names both sides use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lambdas.shared.config import (
    SETTINGS,
    InvalidSettingsError,
    Settings,
    SettingSpec,
    env_value,
    settings_from_env,
)

STACK_NAME = "PixflareJobs"

# --- Lambda target (layers/build.py builds the layers for the same target) ----
PYTHON_RUNTIME = "python3.12"
ARCHITECTURE = "arm64"
LOG_LEVEL = "INFO"
LOG_RETENTION_DAYS = 30
METRICS_NAMESPACE = "Pixflare"

# --- SQS and event source mappings -------------------------------------------
MAX_RECEIVE_COUNT = 3
VISIBILITY_MULTIPLIER = 6  # queue visibility = 6 x function timeout (AWS guidance)
SOURCE_RETENTION_DAYS = 4
DLQ_RETENTION_DAYS = 14  # longer than the source's, so a redriven message keeps its age
BATCHING_WINDOW_SECONDS = 1
# The mapping never polls more than this many concurrent invocations, so Lambda
# throttling cannot bounce messages back to the queue and on into the DLQ.
MAX_CONCURRENCY = 5


@dataclass(frozen=True)
class WorkerSpec:
    """One queue, its DLQ and the function consuming it."""

    key: str  # construct id prefix and the name `pixflare dlq redrive` uses
    handler: str
    batch_size: int
    timeout_seconds: int
    memory_mb: int
    service: str  # POWERTOOLS_SERVICE_NAME
    queue_url_env: str  # the variable other functions use to send to this queue
    output_prefix: str  # <prefix>QueueUrl / <prefix>DlqUrl
    oldest_message_alarm_seconds: int
    max_concurrency: int = MAX_CONCURRENCY
    batching_window_seconds: int = BATCHING_WINDOW_SECONDS

    @property
    def visibility_timeout_seconds(self) -> int:
        return VISIBILITY_MULTIPLIER * self.timeout_seconds


VARIANT = WorkerSpec(
    key="variant",
    handler="lambdas.variant.handler.handler",
    batch_size=5,
    timeout_seconds=30,
    # Measured (bench/variant_memory.py): a 100 MP RGBA PNG, the default pixel limit,
    # peaks near 1.2 GB; 2048 MB leaves room and buys a little more than one vCPU.
    memory_mb=2048,
    service="variant",
    queue_url_env="VARIANT_QUEUE_URL",
    output_prefix="Variant",
    oldest_message_alarm_seconds=900,
)
BACKUP = WorkerSpec(
    key="backup",
    handler="lambdas.backup.handler.handler",
    batch_size=10,
    timeout_seconds=60,
    memory_mb=512,
    service="backup",
    queue_url_env="BACKUP_QUEUE_URL",
    output_prefix="Backup",
    oldest_message_alarm_seconds=3600,
)
DOMAIN = WorkerSpec(
    key="domain",
    handler="lambdas.domain.handler.handler",
    batch_size=5,
    timeout_seconds=30,
    memory_mb=256,
    service="domain",
    queue_url_env="DOMAIN_QUEUE_URL",
    output_prefix="Domain",
    oldest_message_alarm_seconds=900,
)
WORKERS: tuple[WorkerSpec, ...] = (VARIANT, BACKUP, DOMAIN)

# The daily jobs' function, also fed by its continuation queue (one cursor at a time).
CRON = WorkerSpec(
    key="cron",
    handler="lambdas.cron.handler.handler",
    batch_size=1,
    timeout_seconds=300,
    memory_mb=512,
    service="cron",
    queue_url_env="CRON_QUEUE_URL",
    output_prefix="Cron",
    oldest_message_alarm_seconds=3600,
    max_concurrency=2,
    batching_window_seconds=0,
)


# --- Schedules -----------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleSpec:
    job: str  # the {"job": ...} input the cron handler dispatches on
    rule_id: str
    context_key: str
    default_expression: str
    needs_queues: bool  # dropped when enableQueues=false


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("cleanup", "CleanupRule", "cleanupSchedule", "cron(0 1 * * ? *)", False),
    ScheduleSpec("analytics", "AnalyticsRule", "analyticsSchedule", "cron(0 2 * * ? *)", False),
    ScheduleSpec("backup-sync", "BackupSyncRule", "backupSyncSchedule", "cron(0 3 * * ? *)", True),
)
SCHEDULE_RETRY_ATTEMPTS = 2
SCHEDULE_MAX_EVENT_AGE_HOURS = 2

# --- Storage -----------------------------------------------------------------
ABORT_INCOMPLETE_MULTIPART_DAYS = 3
ACCESS_LOG_RETENTION_DAYS = 90


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True)
class TableSpec:
    key: str  # construct id and env/output stem
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    indexes: tuple[IndexSpec, ...] = ()
    env: str = ""
    output: str = ""


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        key="Images",
        partition_key="pk",
        indexes=(
            IndexSpec("by-owner", "owner", "created_at"),
            IndexSpec("by-deleted", "deleted_pk", "deleted_at"),
            IndexSpec("by-backup-state", "backup_state", "backup_state_at"),
        ),
        env="IMAGES_TABLE",
        output="ImagesTableName",
    ),
    TableSpec(
        key="Domains",
        partition_key="hostname",
        indexes=(IndexSpec("by-owner", "owner", "created_at"),),
        env="DOMAINS_TABLE",
        output="DomainsTableName",
    ),
    TableSpec(
        key="Stats",
        partition_key="pk",
        sort_key="sk",
        ttl_attribute="expires_at",
        env="STATS_TABLE",
        output="StatsTableName",
    ),
    TableSpec(
        key="Destinations",
        partition_key="owner",
        indexes=(IndexSpec("all-destinations", "kind", "owner"),),
        env="DESTINATIONS_TABLE",
        output="DestinationsTableName",
    ),
    TableSpec(
        key="Idempotency",
        partition_key="id",
        ttl_attribute="expiration",
        env="IDEMPOTENCY_TABLE",
        output="IdempotencyTableName",
    ),
)

# --- Environment variable names (docs/internals.md) ---------------------------
ENV_IMAGES_BUCKET = "IMAGES_BUCKET"
ENV_QUEUE_URL = "QUEUE_URL"  # the function's own source queue
ENV_DLQ_URL = "DLQ_URL"  # the function's own queue's DLQ
ENV_BACKUP_KMS_KEY_ID = "BACKUP_KMS_KEY_ID"
ENV_CLOUDFLARE_SECRET_ARN = "CLOUDFLARE_API_TOKEN_SECRET_ARN"  # noqa: S105  (a variable name)

# --- Outputs (docs/internals.md; read by `pixflare` without --endpoint) --------
OUTPUT_BUCKET = "ImagesBucketName"
OUTPUT_BACKUP_KEY = "BackupKeyId"
OUTPUT_CRON_QUEUE = "CronQueueUrl"
OUTPUT_CRON_FUNCTION = "CronFunctionName"
OUTPUT_RUNTIME_SETTINGS = "RuntimeSettings"

# --- Context -------------------------------------------------------------------
# The runtime settings' context keys, defaults and bounds are declared once, on
# lambdas.shared.config.Settings; the context is parsed through that model. Besides
# them the app reads the alarm e-mail and the schedules.
ALARM_EMAIL_CONTEXT = "alarmEmail"  # empty: the alarms' topic has no subscription
# Runtime settings deploy time sets: rendered into the functions' environments.
# Never a secret, never a resource name (the stack sets those).
DEPLOYED_SETTINGS: tuple[SettingSpec, ...] = tuple(
    spec
    for spec in SETTINGS.values()
    if spec.context is not None and not spec.resource and not spec.secret
)
CONTEXT_SETTINGS: dict[str, SettingSpec] = {
    spec.context: spec for spec in SETTINGS.values() if spec.context is not None
}
CONTEXT_KEYS: tuple[str, ...] = (
    *CONTEXT_SETTINGS,
    ALARM_EMAIL_CONTEXT,
    *(spec.context_key for spec in SCHEDULES),
)


def _as_schedule(key: str, value: Any) -> str:
    text = str(value).strip()
    if not (text.startswith(("cron(", "rate(")) and text.endswith(")")):
        raise ValueError(f"context {key}: expected cron(...) or rate(...), got {value!r}")
    return text


def runtime_settings_from_context(context: Mapping[str, Any]) -> Settings:
    """The functions' settings from the context (missing keys: the model's defaults).

    Each value goes through the same parser as the functions' environment, so a bad
    one fails the synth with its context key's name.
    """
    given = {
        key: str(value).strip()
        for key, value in context.items()
        if key in CONTEXT_SETTINGS and value is not None
    }
    try:
        return settings_from_env({CONTEXT_SETTINGS[key].env: value for key, value in given.items()})
    except InvalidSettingsError as err:
        keys = {spec.env: key for key, spec in CONTEXT_SETTINGS.items()}
        problems = []
        for env, message in err.problems:
            key = keys.get(env, env)
            shown = "" if "got " in message else f", got {given.get(key)!r}"
            problems.append(f"context {key}: {message}{shown}")
        raise ValueError("; ".join(problems)) from None


@dataclass(frozen=True)
class AppSettings:
    """The context, parsed and checked."""

    runtime: Settings  # the functions' runtime settings
    alarm_email: str = ""
    schedules: dict[str, str] = field(default_factory=dict)  # job -> expression

    @classmethod
    def from_context(cls, get: Mapping[str, Any]) -> AppSettings:
        """Parse from a mapping of context key -> value (missing keys take defaults)."""

        def value(key: str, default: Any) -> Any:
            got = get.get(key)
            return default if got is None else got

        return cls(
            runtime=runtime_settings_from_context(get),
            alarm_email=str(value(ALARM_EMAIL_CONTEXT, "")).strip(),
            schedules={
                spec.job: _as_schedule(
                    spec.context_key, value(spec.context_key, spec.default_expression)
                )
                for spec in SCHEDULES
            },
        )

    @property
    def uses_cloudflare(self) -> bool:
        return self.runtime.custom_domain_provider == "cloudflare"

    def runtime_env(self) -> dict[str, dict[str, str]]:
        """Runtime settings per function key; each function gets only its own."""
        return {
            spec.key: {
                setting.env: env_value(getattr(self.runtime, setting.field))
                for setting in DEPLOYED_SETTINGS
                if spec.key in setting.used_by
            }
            for spec in (*WORKERS, CRON)
        }


def powertools_env(spec: WorkerSpec) -> dict[str, str]:
    return {
        "POWERTOOLS_SERVICE_NAME": spec.service,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "LOG_LEVEL": LOG_LEVEL,
    }
