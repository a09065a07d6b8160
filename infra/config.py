"""Every name and number the CDK app uses, in one place.

The runtime settings (variable, context key, default, bounds, meaning) are
declared once, in ``lambdas/shared/config.py``; context values (``cdk synth -c
key=value`` or cdk.json) are parsed through that model here, so a bad value fails
the synth with the key's name in the message, and each function's environment is
rendered from it. docs/internals.md lists the names both sides use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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

STACK_NAME = "PixflareJobs"  # the default; `-c stackName=NAME` names another

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

# --- Concurrency -------------------------------------------------------------------
# Each event source mapping never runs more than its MaximumConcurrency invocations at
# once, so as long as their sum fits what the account lets the stack use, Lambda never
# throttles them, and throttling never bounces messages back to the queue and on into
# the DLQ. `-c concurrencyBudget=N` says how much of the account's concurrency (10 on
# many new accounts) the stack may use; each mapping gets SQS's minimum of 2 and the
# rest is shared by WorkerSpec.concurrency_share (mapping_concurrency below).
#
# With the ingest mapping the stack has four mappings (five with custom domains): the
# default budget of 10 fits the default stack (2 each + 1 for the scheduled runs = 9;
# the one left over goes to the variant mapping, the largest share), while custom
# domains need a budget of at least 11 (5 x 2 + 1).
#
# The API function is invoked synchronously by API Gateway and is deliberately NOT
# given reserved concurrency: on a 10-concurrency account reserving any would take it
# from the mappings (Lambda keeps 10 unreserved), and the deploy would fail outright
# on such an account. It runs from the account's unreserved pool, bounded by the HTTP
# API stage's throttling (API_THROTTLE_RATE / API_THROTTLE_BURST): at ~100 ms a request
# 50 req/s keep about 5 invocations in flight. A budget below the account's limit
# leaves that much headroom to the API; see README, "concurrencyBudget".
CONCURRENCY_BUDGET_CONTEXT = "concurrencyBudget"
DEFAULT_CONCURRENCY_BUDGET = 10
MIN_MAPPING_CONCURRENCY = 2  # SQS event source MaximumConcurrency: 2..1000
MAX_MAPPING_CONCURRENCY = 1000
# The daily jobs' EventBridge invocations of the cron function (one at a time) run
# beside its continuation queue's mapping: kept out of what the mappings share.
SCHEDULED_CONCURRENCY = 1


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function: its key (the settings model's function key), code and size."""

    key: str  # construct id prefix; WorkerSpec: the name `pixflare dlq redrive` uses
    handler: str
    timeout_seconds: int
    memory_mb: int
    service: str  # POWERTOOLS_SERVICE_NAME


@dataclass(frozen=True)
class WorkerSpec(FunctionSpec):
    """One queue, its DLQ and the function consuming it."""

    batch_size: int
    queue_url_env: str  # the variable other functions use to send to this queue
    output_prefix: str  # <prefix>QueueUrl / <prefix>DlqUrl
    oldest_message_alarm_seconds: int
    # Its part of the concurrency budget beyond the minimum 2 (mapping_concurrency).
    concurrency_share: int = 0
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
    concurrency_share=3,  # the heaviest and the one users wait for
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
    concurrency_share=2,
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
    concurrency_share=1,  # a few DNS queries per message
)
# Objects created under an `original` key (S3 event notifications straight to this
# queue): checked, recorded, variant and backup jobs enqueued. Light work (a ranged GET,
# a record, two sends) that users wait for: no batching window.
INGEST = WorkerSpec(
    key="ingest",
    handler="lambdas.ingest.handler.handler",
    batch_size=10,
    timeout_seconds=30,
    memory_mb=256,
    service="ingest",
    queue_url_env="INGEST_QUEUE_URL",
    output_prefix="Ingest",
    oldest_message_alarm_seconds=300,
    # Light work that fans out into variant jobs, the bottleneck: the variant mapping
    # keeps the largest share, ingest gets the minimum 2 at the default budget.
    concurrency_share=1,
    batching_window_seconds=0,  # users wait for it
)
WORKERS: tuple[WorkerSpec, ...] = (VARIANT, BACKUP, DOMAIN, INGEST)

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
    concurrency_share=0,  # one cursor at a time: the minimum 2 is plenty
    batching_window_seconds=0,
)


# --- HTTP API ----------------------------------------------------------------------
# The function behind API Gateway's HTTP API (payload format 2.0). Synchronous: no
# queue, no reserved concurrency (see "Concurrency" above).
API = FunctionSpec(
    key="api",
    handler="lambdas.api.handler.handler",
    timeout_seconds=10,
    memory_mb=512,
    service="api",
)
# The default stage's throttling (every route): steady requests per second, burst.
API_THROTTLE_RATE = 50
API_THROTTLE_BURST = 100
API_CORS_MAX_AGE_SECONDS = 3600
API_ACCESS_LOG_RETENTION_DAYS = LOG_RETENTION_DAYS
# Routes: (method, path). The function routes them itself (Powertools).
API_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/uploads"),
    ("GET", "/v1/images"),
    ("GET", "/v1/images/{id}"),
)
# S3 notifications to the ingest queue: objects whose key ends with this.
ORIGINAL_SUFFIX = "/original"
# Browsers POST originals straight to the bucket (presigned POST) from these origins.
BUCKET_CORS_MAX_AGE_SECONDS = 3600


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
# EventBridge invokes the cron function asynchronously: a job that throws is retried
# by Lambda this many times, then its event goes to the on-failure queue (alarmed).
CRON_ASYNC_RETRY_ATTEMPTS = 2
# A start still waiting in Lambda's async queue (throttled) after this long is sent to
# the on-failure queue instead of running hours late; the operator re-runs it by hand.
CRON_ASYNC_MAX_EVENT_AGE_HOURS = 6
# Queue name <stack>-cron-failed: no longer than the longest `-{key}-dlq` suffix, which
# bounds the stack name (STACK_NAME_LIMIT).
CRON_FAILURE_QUEUE_SUFFIX = "cron-failed"
# The cron function's Powertools metrics (lambdas/cron/handler.py), dimensions service
# and job: runs that finished (1, or 0 when continued on the cron queue), steps taken.
CRON_FINISHED_METRIC = "CronFinished"
CRON_STEPS_METRIC = "CronSteps"

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
            # The HTTP API's `GET /v1/images?album=`: album_key is "owner/album".
            # CloudFormation creates or deletes only ONE global secondary index per table
            # update: add the next index in a later deploy, never two at once.
            IndexSpec("by-album", "album_key", "created_at"),
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
    # Per-owner API keys, hashes only (lambdas/shared/api_keys.py); the API function
    # reads it (and nothing else does).
    TableSpec(
        key="ApiKeys",
        partition_key="key_id",
        indexes=(IndexSpec("by-owner", "owner", "created_at"),),
        env="API_KEYS_TABLE",
        output="ApiKeysTableName",
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
OUTPUT_ALARM_TOPIC = "AlarmTopicArn"  # subscribe a pager here
OUTPUT_API_URL = "ApiUrl"  # the HTTP API's endpoint (enableQueues=true only)
# Cloudflare mode: where the operator stores the token (an output name, not a secret).
OUTPUT_CLOUDFLARE_SECRET = "CloudflareTokenSecretArn"  # noqa: S105

# --- Alarms ----------------------------------------------------------------------
ALARM_TOPIC_SUFFIX = "alarms"  # topic name: <stack>-alarms
# Emitted by the domain function (Powertools: namespace METRICS_NAMESPACE, default
# dimension service=domain) while the Cloudflare token is not stored yet.
PROVIDER_NOT_CONFIGURED_METRIC = "ProviderNotConfigured"
# Emitted by the backup function and the daily backup sync when an owner's backup
# destination is refused at use (lambdas/shared/endpoint_policy.py).
BACKUP_DESTINATION_REFUSED_METRIC = "BackupDestinationRefused"

# --- Context -------------------------------------------------------------------
# The runtime settings' context keys, defaults and bounds are declared once, on
# lambdas.shared.config.Settings; the context is parsed through that model. Besides
# them the app reads the alarm e-mail and the schedules.
ALARM_EMAIL_CONTEXT = "alarmEmail"  # empty: the alarms' topic has no subscription
STACK_NAME_CONTEXT = "stackName"  # names the stack and prefixes every named resource
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
    STACK_NAME_CONTEXT,
    CONCURRENCY_BUDGET_CONTEXT,
    *(spec.context_key for spec in SCHEDULES),
)

# CloudFormation: a letter, then letters, digits and hyphens, at most 128 characters.
# Queue names are `{stackName}-{key}` and `{stackName}-{key}-dlq`, and SQS allows 80.
_STACK_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
# A browser origin as CORS compares it: scheme, host, optional port; no path, no "*".
_ORIGIN_PATTERN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
QUEUE_NAME_LIMIT = 80
LONGEST_QUEUE_SUFFIX = max((f"-{spec.key}-dlq" for spec in (*WORKERS, CRON)), key=len)
STACK_NAME_LIMIT = min(128, QUEUE_NAME_LIMIT - len(LONGEST_QUEUE_SUFFIX))


class ContextError(ValueError):
    """A context value (or a combination of them) that cannot work: one line, naming its key."""


def check_stack_name(value: Any) -> str:
    name = str(value).strip()
    if not _STACK_NAME_PATTERN.fullmatch(name):
        raise ContextError(
            f"context {STACK_NAME_CONTEXT}: {name!r} is not a CloudFormation stack name "
            "(a letter, then letters, digits and hyphens)"
        )
    if len(name) > STACK_NAME_LIMIT:
        raise ContextError(
            f"context {STACK_NAME_CONTEXT}: {name!r} is {len(name)} characters; at most "
            f"{STACK_NAME_LIMIT} fit SQS's {QUEUE_NAME_LIMIT}-character queue names "
            f"({{stackName}}{LONGEST_QUEUE_SUFFIX})"
        )
    return name


def _as_budget(value: Any) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ContextError(
            f"context {CONCURRENCY_BUDGET_CONTEXT}: expected a whole number, got {value!r}"
        )
    return int(text)


def minimum_budget(specs: Sequence[WorkerSpec]) -> int:
    """The least budget these mappings (and the daily jobs' scheduled runs) can work with."""
    return MIN_MAPPING_CONCURRENCY * len(specs) + SCHEDULED_CONCURRENCY


def mapping_concurrency(budget: int, specs: Sequence[WorkerSpec]) -> dict[str, int]:
    """Each mapping's MaximumConcurrency: 2 each, the rest of the budget by share.

    What is left after every mapping's minimum (and the scheduled runs' one) is split
    by ``concurrency_share``, largest remainders first (ties in ``specs`` order), capped
    at SQS's 1000. The sum never exceeds ``budget`` minus the scheduled runs'.
    """
    floor = minimum_budget(specs)
    if budget < floor:
        raise ContextError(
            f"context {CONCURRENCY_BUDGET_CONTEXT}: {budget} is too small: the stack's "
            f"{len(specs)} event source mappings need {MIN_MAPPING_CONCURRENCY} each (SQS's "
            f"minimum MaximumConcurrency), plus {SCHEDULED_CONCURRENCY} for the daily jobs' "
            f"scheduled runs: {floor} in all; raise it to what the account's Lambda "
            "concurrency limit leaves free"
        )
    spare = budget - floor
    total = sum(spec.concurrency_share for spec in specs)
    extra = {spec.key: 0 for spec in specs}
    if total:
        extra = {spec.key: spare * spec.concurrency_share // total for spec in specs}
        remainders = {spec.key: spare * spec.concurrency_share % total for spec in specs}
        order = {spec.key: i for i, spec in enumerate(specs)}
        left = spare - sum(extra.values())
        for key in sorted(extra, key=lambda k: (-remainders[k], order[k]))[:left]:
            extra[key] += 1
    return {
        spec.key: min(MAX_MAPPING_CONCURRENCY, MIN_MAPPING_CONCURRENCY + extra[spec.key])
        for spec in specs
    }


def _as_schedule(key: str, value: Any) -> str:
    text = str(value).strip()
    if not (text.startswith(("cron(", "rate(")) and text.endswith(")")):
        raise ContextError(f"context {key}: expected cron(...) or rate(...), got {value!r}")
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
        raise ContextError("; ".join(problems)) from None


@dataclass(frozen=True)
class AppSettings:
    """The context, parsed and checked."""

    runtime: Settings  # the functions' runtime settings
    alarm_email: str = ""
    schedules: dict[str, str] = field(default_factory=dict)  # job -> expression
    stack_name: str = STACK_NAME
    concurrency_budget: int = DEFAULT_CONCURRENCY_BUDGET

    @classmethod
    def from_context(cls, get: Mapping[str, Any]) -> AppSettings:
        """Parse from a mapping of context key -> value (missing keys take defaults).

        Raises ContextError (a ValueError) naming the key when a value, or a
        combination of values, cannot work.
        """

        def value(key: str, default: Any) -> Any:
            got = get.get(key)
            return default if got is None else got

        settings = cls(
            runtime=runtime_settings_from_context(get),
            alarm_email=str(value(ALARM_EMAIL_CONTEXT, "")).strip(),
            schedules={
                spec.job: _as_schedule(
                    spec.context_key, value(spec.context_key, spec.default_expression)
                )
                for spec in SCHEDULES
            },
            stack_name=check_stack_name(value(STACK_NAME_CONTEXT, STACK_NAME)),
            concurrency_budget=_as_budget(
                value(CONCURRENCY_BUDGET_CONTEXT, DEFAULT_CONCURRENCY_BUDGET)
            ),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations whose functions could not work (ContextError, one line)."""
        runtime = self.runtime
        if self.runtime.enable_queues and self.uses_cloudflare:
            if not runtime.cloudflare_zone_id.strip():
                raise ContextError(
                    "context cloudflareZoneId: required with customDomainProvider=cloudflare "
                    "(the zone holding the custom hostnames)"
                )
            if not runtime.custom_domain_fallback_cname.strip():
                raise ContextError(
                    "context customDomainFallbackCname: required with "
                    "customDomainProvider=cloudflare (the CNAME target users point their "
                    "domains at, the zone's fallback origin)"
                )
            if not runtime.cloudflare_api_base.startswith(("https://", "http://")):
                raise ContextError(
                    "context cloudflareApiBase: must be an http(s) URL, "
                    f"got {runtime.cloudflare_api_base!r}"
                )
        if self.domains_enabled:
            _check_domain_settings(runtime)
        for origin in runtime.frontend_origins:
            if not _ORIGIN_PATTERN.fullmatch(origin):
                raise ContextError(
                    f"context frontendOrigins: {origin!r} is not an origin "
                    "(scheme://host[:port], no path, e.g. https://photos.example.com)"
                )
        self.concurrency  # noqa: B018  (raises ContextError when the budget cannot fit)

    @property
    def uses_cloudflare(self) -> bool:
        return self.runtime.custom_domain_provider == "cloudflare"

    @property
    def domains_enabled(self) -> bool:
        """Custom domains are deployed (queue, DLQ, function) only with a CNAME target."""
        return self.runtime.enable_queues and bool(
            self.runtime.custom_domain_fallback_cname.strip()
        )

    @property
    def queue_workers(self) -> tuple[WorkerSpec, ...]:
        """The queue workers this stack deploys."""
        if not self.runtime.enable_queues:
            return ()
        return tuple(spec for spec in WORKERS if spec is not DOMAIN or self.domains_enabled)

    @property
    def frontend_origins(self) -> tuple[str, ...]:
        """Browser origins allowed by the HTTP API's and the bucket's CORS (none: no CORS)."""
        return self.runtime.frontend_origins

    @property
    def concurrency(self) -> dict[str, int]:
        """MaximumConcurrency of each event source mapping, by worker key."""
        return mapping_concurrency(self.concurrency_budget, (*self.queue_workers, CRON))

    def runtime_env(self) -> dict[str, dict[str, str]]:
        """Runtime settings per function key; each function gets only its own."""
        return {
            spec.key: {
                setting.env: env_value(getattr(self.runtime, setting.field))
                for setting in DEPLOYED_SETTINGS
                if spec.key in setting.used_by
            }
            for spec in (*WORKERS, CRON, API)
        }


def _check_domain_settings(runtime: Settings) -> None:
    """The domain function's names and servers, parsed as it will parse them."""
    from lambdas.domain.dns_check import parse_nameserver
    from lambdas.domain.hostnames import normalize_hostname, own_domains
    from lambdas.shared.errors import PixflareError

    checks: list[tuple[str, Any]] = [
        ("customDomainFallbackCname", lambda: own_domains(runtime.custom_domain_fallback_cname)),
        ("ownDomains", lambda: [normalize_hostname(d) for d in runtime.own_domains]),
        ("dnsNameservers", lambda: [parse_nameserver(s) for s in runtime.dns_nameservers]),
    ]
    for key, check in checks:
        try:
            check()
        except (PixflareError, ValueError) as err:
            reason = str(err).removeprefix("PIXFLARE_DNS_NAMESERVERS: ")
            raise ContextError(f"context {key}: {reason}") from None


def powertools_env(spec: FunctionSpec) -> dict[str, str]:
    return {
        "POWERTOOLS_SERVICE_NAME": spec.service,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "LOG_LEVEL": LOG_LEVEL,
    }
