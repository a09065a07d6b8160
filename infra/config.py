"""Every name and number the CDK app uses, in one place.

The runtime side reads the same environment variable names in
``lambdas/shared/config.py``; docs/internals.md is the contract between the two.
Context values (``cdk synth -c key=value`` or cdk.json) are parsed and checked
here, so a bad value fails the synth with the key's name in the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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

CUSTOM_DOMAIN_PROVIDERS = ("dns-only", "cloudflare")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"context {key}: expected true or false, got {value!r}")


def _as_int(key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"context {key}: expected an integer, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        upper = "" if maximum is None else f" and {maximum}"
        raise ValueError(f"context {key}: expected a value between {minimum}{upper}, got {number}")
    return number


def _as_float(key: str, value: Any, minimum: float, maximum: float) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"context {key}: expected a number, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ValueError(f"context {key}: expected {minimum}..{maximum}, got {number}")
    return number


def _as_schedule(key: str, value: Any) -> str:
    text = str(value).strip()
    if not (text.startswith(("cron(", "rate(")) and text.endswith(")")):
        raise ValueError(f"context {key}: expected cron(...) or rate(...), got {value!r}")
    return text


# Context keys and their defaults. The runtime defaults in lambdas/shared/config.py match.
CONTEXT_DEFAULTS: dict[str, Any] = {
    "enableQueues": True,
    "enableAiClassification": False,
    "aiMaxLabels": 10,
    "aiMinClassificationScore": 0.1,
    "aiImageWidth": 384,
    "maxImagePixels": 100_000_000,
    "softDeleteRetentionDays": 30,
    "domainCheckIntervalSeconds": 30,
    "domainMaxChecks": 40,
    "customDomainFallbackCname": "",
    "customDomainProvider": "dns-only",
    "cloudflareZoneId": "",
    "cloudflareApiBase": "https://api.cloudflare.com/client/v4",
    "cloudflareApiTokenSecretArn": "",  # empty: the stack creates the secret
    "dnsNameservers": "",
    "ownDomains": "",  # comma list users may not claim as custom domains
    "backupSyncLimit": 100,
    "backupVerifySample": 20,
    "alarmEmail": "",
    **{spec.context_key: spec.default_expression for spec in SCHEDULES},
}


@dataclass(frozen=True)
class AppSettings:
    """The context flags, parsed and checked."""

    enable_queues: bool = True
    enable_ai_classification: bool = False
    ai_max_labels: int = 10
    ai_min_classification_score: float = 0.1
    ai_image_width: int = 384
    max_image_pixels: int = 100_000_000
    soft_delete_retention_days: int = 30
    domain_check_interval_seconds: int = 30
    domain_max_checks: int = 40
    custom_domain_fallback_cname: str = ""
    custom_domain_provider: str = "dns-only"
    cloudflare_zone_id: str = ""
    cloudflare_api_base: str = "https://api.cloudflare.com/client/v4"
    cloudflare_api_token_secret_arn: str = ""
    dns_nameservers: str = ""
    own_domains: str = ""
    backup_sync_limit: int = 100
    backup_verify_sample: int = 20
    alarm_email: str = ""
    schedules: dict[str, str] = field(default_factory=dict)  # job -> expression

    @classmethod
    def from_context(cls, get: Mapping[str, Any]) -> AppSettings:
        """Parse from a mapping of context key -> value (missing keys take defaults)."""

        def value(key: str) -> Any:
            got = get.get(key)
            return CONTEXT_DEFAULTS[key] if got is None else got

        provider = str(value("customDomainProvider")).strip()
        if provider not in CUSTOM_DOMAIN_PROVIDERS:
            raise ValueError(
                f"context customDomainProvider: expected one of {CUSTOM_DOMAIN_PROVIDERS}, "
                f"got {provider!r}"
            )
        return cls(
            enable_queues=_as_bool("enableQueues", value("enableQueues")),
            enable_ai_classification=_as_bool(
                "enableAiClassification", value("enableAiClassification")
            ),
            ai_max_labels=_as_int("aiMaxLabels", value("aiMaxLabels"), 1, 1000),
            ai_min_classification_score=_as_float(
                "aiMinClassificationScore", value("aiMinClassificationScore"), 0.0, 1.0
            ),
            ai_image_width=_as_int("aiImageWidth", value("aiImageWidth"), 64, 4096),
            max_image_pixels=_as_int("maxImagePixels", value("maxImagePixels"), 1),
            soft_delete_retention_days=_as_int(
                "softDeleteRetentionDays", value("softDeleteRetentionDays"), 0
            ),
            domain_check_interval_seconds=_as_int(
                "domainCheckIntervalSeconds", value("domainCheckIntervalSeconds"), 0, 900
            ),
            domain_max_checks=_as_int("domainMaxChecks", value("domainMaxChecks"), 1),
            custom_domain_fallback_cname=str(value("customDomainFallbackCname")).strip(),
            custom_domain_provider=provider,
            cloudflare_zone_id=str(value("cloudflareZoneId")).strip(),
            cloudflare_api_base=str(value("cloudflareApiBase")).strip(),
            cloudflare_api_token_secret_arn=str(value("cloudflareApiTokenSecretArn")).strip(),
            dns_nameservers=str(value("dnsNameservers")).strip(),
            own_domains=str(value("ownDomains")).strip(),
            backup_sync_limit=_as_int("backupSyncLimit", value("backupSyncLimit"), 1),
            backup_verify_sample=_as_int("backupVerifySample", value("backupVerifySample"), 0),
            alarm_email=str(value("alarmEmail")).strip(),
            schedules={
                spec.job: _as_schedule(spec.context_key, value(spec.context_key))
                for spec in SCHEDULES
            },
        )

    @property
    def uses_cloudflare(self) -> bool:
        return self.custom_domain_provider == "cloudflare"

    def runtime_env(self) -> dict[str, dict[str, str]]:
        """Runtime settings per function key; each function gets only its own."""
        common = {"ENABLE_QUEUES": str(self.enable_queues).lower()}
        return {
            VARIANT.key: {
                **common,
                "ENABLE_AI_CLASSIFICATION": str(self.enable_ai_classification).lower(),
                "AI_MAX_LABELS": str(self.ai_max_labels),
                "AI_MIN_CLASSIFICATION_SCORE": repr(self.ai_min_classification_score),
                "AI_IMAGE_WIDTH": str(self.ai_image_width),
                "MAX_IMAGE_PIXELS": str(self.max_image_pixels),
            },
            BACKUP.key: {**common},
            DOMAIN.key: {
                **common,
                "DOMAIN_CHECK_INTERVAL_SECONDS": str(self.domain_check_interval_seconds),
                "DOMAIN_MAX_CHECKS": str(self.domain_max_checks),
                "CUSTOM_DOMAIN_FALLBACK_CNAME": self.custom_domain_fallback_cname,
                "PIXFLARE_DNS_NAMESERVERS": self.dns_nameservers,
                "PIXFLARE_OWN_DOMAINS": self.own_domains,
                "CUSTOM_DOMAIN_PROVIDER": self.custom_domain_provider,
                "CLOUDFLARE_API_BASE": self.cloudflare_api_base,
                "CLOUDFLARE_ZONE_ID": self.cloudflare_zone_id,
            },
            CRON.key: {
                **common,
                "SOFT_DELETE_RETENTION_DAYS": str(self.soft_delete_retention_days),
                "BACKUP_SYNC_LIMIT": str(self.backup_sync_limit),
                "BACKUP_VERIFY_SAMPLE": str(self.backup_verify_sample),
            },
        }


def powertools_env(spec: WorkerSpec) -> dict[str, str]:
    return {
        "POWERTOOLS_SERVICE_NAME": spec.service,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "LOG_LEVEL": LOG_LEVEL,
    }
