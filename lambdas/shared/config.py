"""Runtime settings: one typed model, read once from the environment.

Each setting is declared once, on :class:`Settings`, with its environment variable,
its CDK context key (when ``cdk synth -c key=value`` may set it), its default, its
bounds and its meaning. The rest is derived from that declaration: the functions
read their environment through it (:func:`load_settings`); ``infra/config.py``
parses the CDK context through it and renders each function's environment from it
(:func:`env_value`); tests/unit/test_settings_model.py checks README's table
against it. Tests and the local stack change the environment and call
:func:`reset_settings`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import PydanticBaseEnvSettingsSource

from lambdas.shared.errors import ConfigError

# The functions (lambdas/<name>/) a deployed setting is given to.
ALL_FUNCTIONS = ("variant", "backup", "domain", "cron", "ingest", "api")
VARIANT = ("variant",)
DOMAIN = ("domain",)
CRON = ("cron",)
API = ("api",)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def setting(
    default: Any,
    env: str,
    doc: str,
    *,
    context: str | None = None,
    used_by: tuple[str, ...] = (),
    resource: bool = False,
    shown_default: str | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> Any:
    """Declare a setting of :class:`Settings`.

    ``env``: its environment variable (a public contract); ``doc``: its meaning, as
    README's table says it; ``context``: the CDK context key that sets it at deploy
    time, if any; ``used_by``: the functions given it when deployed; ``resource``:
    names a resource, so the stack sets it; ``shown_default``: README's default
    column when the default is not a plain value; ``ge``/``le``: its bounds.
    """
    return Field(
        default,
        validation_alias=env,
        description=doc,
        ge=ge,
        le=le,
        json_schema_extra={
            "context": context,
            "used_by": list(used_by),
            "resource": resource,
            "shown_default": shown_default,
        },
    )


class Settings(BaseSettings):
    """What a function may be told through its environment.

    ``Settings()`` reads the process environment (keyword arguments, by field name,
    win over it); :func:`settings_from_env` reads a given mapping instead.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        case_sensitive=True,  # ENABLE_QUEUES, never enable_queues
        enable_decoding=False,  # lists are comma lists, not JSON
        validate_by_name=True,
        validate_by_alias=True,
    )

    enable_queues: bool = setting(
        True,
        "ENABLE_QUEUES",
        "`false`: no queues or consumers; uploads still work, images keep only `original`",
        context="enableQueues",
        used_by=ALL_FUNCTIONS,
    )
    enable_ai_classification: bool = setting(
        False,
        "ENABLE_AI_CLASSIFICATION",
        "Rekognition DetectLabels labels + dominant colours on each image",
        context="enableAiClassification",
        used_by=VARIANT,
    )
    ai_max_labels: int = setting(
        10, "AI_MAX_LABELS", "labels kept", context="aiMaxLabels", used_by=VARIANT, ge=1, le=1000
    )
    ai_min_classification_score: float = setting(
        0.1,
        "AI_MIN_CLASSIFICATION_SCORE",
        "minimum confidence, 0..1",
        context="aiMinClassificationScore",
        used_by=VARIANT,
        ge=0.0,
        le=1.0,
    )
    ai_image_width: int = setting(
        384,
        "AI_IMAGE_WIDTH",
        "width of the JPEG sent to Rekognition",
        context="aiImageWidth",
        used_by=VARIANT,
        ge=64,
        le=4096,
    )
    max_image_pixels: int = setting(
        100_000_000,
        "MAX_IMAGE_PIXELS",
        "larger images are refused from the header, before decoding",
        context="maxImagePixels",
        used_by=VARIANT,
        ge=1,
    )
    soft_delete_retention_days: int = setting(
        30,
        "SOFT_DELETE_RETENTION_DAYS",
        "days a deleted image is kept before cleanup",
        context="softDeleteRetentionDays",
        used_by=CRON,
        ge=0,
    )
    domain_check_interval_seconds: int = setting(
        30,
        "DOMAIN_CHECK_INTERVAL_SECONDS",
        "delay between DNS checks",
        context="domainCheckIntervalSeconds",
        used_by=DOMAIN,
        ge=0,
        le=900,
    )
    domain_max_checks: int = setting(
        40,
        "DOMAIN_MAX_CHECKS",
        "checks before a domain is marked failed",
        context="domainMaxChecks",
        used_by=DOMAIN,
        ge=1,
    )
    custom_domain_fallback_cname: str = setting(
        "",
        "CUSTOM_DOMAIN_FALLBACK_CNAME",
        "the CNAME target users point their domains at",
        context="customDomainFallbackCname",
        used_by=DOMAIN,
    )
    dns_nameservers: tuple[str, ...] = setting(
        (),
        "PIXFLARE_DNS_NAMESERVERS",
        "comma list of `host[:port]` to query",
        context="dnsNameservers",
        used_by=DOMAIN,
        shown_default="system / authoritative",
    )
    own_domains: tuple[str, ...] = setting(
        (),
        "PIXFLARE_OWN_DOMAINS",
        "comma list of domains users may not claim (the fallback CNAME's domain always is)",
        context="ownDomains",
        used_by=DOMAIN,
    )
    custom_domain_provider: Literal["dns-only", "cloudflare"] = setting(
        "dns-only",
        "CUSTOM_DOMAIN_PROVIDER",
        "`dns-only` or `cloudflare`",
        context="customDomainProvider",
        used_by=DOMAIN,
    )
    cloudflare_api_base: str = setting(
        "https://api.cloudflare.com/client/v4",
        "CLOUDFLARE_API_BASE",
        "Cloudflare for SaaS: the API's base URL",
        context="cloudflareApiBase",
        used_by=DOMAIN,
    )
    cloudflare_zone_id: str = setting(
        "",
        "CLOUDFLARE_ZONE_ID",
        "Cloudflare for SaaS: the zone holding the custom hostnames",
        context="cloudflareZoneId",
        used_by=DOMAIN,
    )
    # Never rendered into a deployed environment: the stack passes the secret's ARN.
    cloudflare_api_token: SecretStr = setting(
        SecretStr(""), "CLOUDFLARE_API_TOKEN", "Cloudflare for SaaS: the API token; never logged"
    )
    cloudflare_api_token_secret_arn: str = setting(
        "",
        "CLOUDFLARE_API_TOKEN_SECRET_ARN",
        "an existing Secrets Manager secret holding the token (empty: the stack creates one); "
        "`CLOUDFLARE_API_TOKEN` wins when set",
        context="cloudflareApiTokenSecretArn",
        used_by=DOMAIN,
        resource=True,
    )
    backup_sync_limit: int = setting(
        100,
        "BACKUP_SYNC_LIMIT",
        "images queued per owner by the daily backup sync",
        context="backupSyncLimit",
        used_by=CRON,
        ge=1,
    )
    backup_verify_sample: int = setting(
        20,
        "BACKUP_VERIFY_SAMPLE",
        "synced backups re-checked per owner per day",
        context="backupVerifySample",
        used_by=CRON,
        ge=0,
    )
    backup_allow_private_endpoints: bool = setting(
        False,
        "BACKUP_ALLOW_PRIVATE_ENDPOINTS",
        "`true`: backup destinations may be plain `http://` and on private, loopback or "
        "link-local addresses (a MinIO on your own network; the local stack sets it). "
        "Off: `https://` and public addresses only",
        context="backupAllowPrivateEndpoints",
        used_by=("backup", "cron"),
    )
    frontend_origins: tuple[str, ...] = setting(
        (),
        "FRONTEND_ORIGINS",
        "comma list of browser origins (`https://host[:port]`) the HTTP API's and the "
        "bucket's CORS allow; empty: no CORS, same-origin only",
        context="frontendOrigins",
        used_by=API,
    )
    # Unset: the worker's 30 s. The demo sets 0, so a poison message walks its receives
    # in seconds.
    backoff_base_seconds: int | None = setting(
        None,
        "PIXFLARE_BACKOFF_BASE_SECONDS",
        "first retry delay of a failed record, doubled on each receive (capped); "
        "`pixflare demo` sets `0`",
        shown_default="`30`",
        ge=0,
        le=900,
    )

    # Resources: the stack sets these on each function that needs them.
    images_bucket: str = setting("", "IMAGES_BUCKET", "the images bucket", resource=True)
    images_table: str = setting("", "IMAGES_TABLE", "images table", resource=True)
    domains_table: str = setting("", "DOMAINS_TABLE", "custom domains table", resource=True)
    stats_table: str = setting("", "STATS_TABLE", "view counters and roll-ups", resource=True)
    destinations_table: str = setting(
        "", "DESTINATIONS_TABLE", "backup destinations", resource=True
    )
    idempotency_table: str = setting(
        "", "IDEMPOTENCY_TABLE", "Powertools idempotency records", resource=True
    )
    api_keys_table: str = setting(
        "", "API_KEYS_TABLE", "per-owner API keys (hashes only)", resource=True
    )
    variant_queue_url: str = setting("", "VARIANT_QUEUE_URL", "the variant queue", resource=True)
    backup_queue_url: str = setting("", "BACKUP_QUEUE_URL", "the backup queue", resource=True)
    domain_queue_url: str = setting("", "DOMAIN_QUEUE_URL", "the domain queue", resource=True)
    cron_queue_url: str = setting(
        "", "CRON_QUEUE_URL", "the cron continuation queue", resource=True
    )
    ingest_queue_url: str = setting(
        "", "INGEST_QUEUE_URL", "the ingest queue (S3 writes to it)", resource=True
    )
    queue_url: str = setting("", "QUEUE_URL", "the function's own queue", resource=True)
    dlq_url: str = setting("", "DLQ_URL", "the function's own queue's DLQ", resource=True)
    backup_kms_key_id: str = setting(
        "", "BACKUP_KMS_KEY_ID", "KMS key wrapping backup credentials", resource=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments, then the environment; no .env file, no secrets directory.
        return init_settings, _Environment(settings_cls, _ENVIRON.get())

    @field_validator("*", mode="before")
    @classmethod
    def _parse_text(cls, value: object, info: ValidationInfo) -> object:
        """Booleans: true/false, 1/0, yes/no, on/off (empty: false); lists: comma lists."""
        if not isinstance(value, str) or info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if annotation is bool:
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if annotation == tuple[str, ...]:
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def require(self, field: str) -> str:
        """The value of a resource setting, or a ConfigError naming its variable."""
        value = getattr(self, field)
        if not value:
            raise ConfigError(f"{FIELD_ENV.get(field, field)} is not set")
        return str(value)


# The mapping settings_from_env is reading, while it reads it; otherwise os.environ.
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "pixflare_settings_environ", default=None
)


class _Environment(PydanticBaseEnvSettingsSource):
    """Each setting from its variable, exactly as named (no prefix, no JSON, no .env)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None) -> None:
        super().__init__(settings_cls)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env = str(field.validation_alias)
        return self.environ.get(env), env, False


@dataclass(frozen=True)
class SettingSpec:
    """One setting as declared on :class:`Settings`."""

    field: str
    env: str
    context: str | None  # the CDK context key that sets it at deploy time
    default: Any
    doc: str  # README's "meaning"
    used_by: tuple[str, ...]  # the functions given it when deployed
    resource: bool  # names a resource: the stack sets it
    shown_default: str | None  # README's default column, when not the plain default
    ge: float | None
    le: float | None

    @property
    def secret(self) -> bool:
        return isinstance(self.default, SecretStr)


def _spec(name: str, info: FieldInfo) -> SettingSpec:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    context, shown = extra.get("context"), extra.get("shown_default")
    used_by = extra.get("used_by")
    bounds = {type(m).__name__: m for m in info.metadata}
    return SettingSpec(
        field=name,
        env=str(info.validation_alias),
        context=context if isinstance(context, str) else None,
        default=info.default,
        doc=info.description or "",
        used_by=tuple(str(f) for f in used_by) if isinstance(used_by, list) else (),
        resource=extra.get("resource") is True,
        shown_default=shown if isinstance(shown, str) else None,
        ge=getattr(bounds.get("Ge"), "ge", None),
        le=getattr(bounds.get("Le"), "le", None),
    )


SETTINGS: dict[str, SettingSpec] = {
    name: _spec(name, info) for name, info in Settings.model_fields.items()
}
# Environment variable -> field name. The names are a public contract (design brief).
ENV_FIELDS: dict[str, str] = {spec.env: name for name, spec in SETTINGS.items()}
FIELD_ENV: dict[str, str] = {name: spec.env for name, spec in SETTINGS.items()}
# Variables naming resources (set by the stack), and the rest: the runtime settings.
RESOURCE_VARIABLES = frozenset(spec.env for spec in SETTINGS.values() if spec.resource)
RUNTIME_VARIABLES = frozenset(ENV_FIELDS) - RESOURCE_VARIABLES


def env_value(value: object) -> str:
    """A setting's value spelled as its variable (what :func:`settings_from_env` reads back)."""
    if isinstance(value, SecretStr):
        raise TypeError("a secret is never rendered into an environment")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return "" if value is None else str(value)


class InvalidSettingsError(ConfigError):
    """Settings that failed validation; ``problems`` pairs each variable with what is wrong."""

    def __init__(self, problems: tuple[tuple[str, str], ...]) -> None:
        self.problems = problems
        super().__init__("invalid settings: " + "; ".join(f"{env}: {msg}" for env, msg in problems))


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Settings from ``environ`` alone (defaults for what it lacks); InvalidSettingsError if bad."""
    token = _ENVIRON.set(environ)
    try:
        return Settings()
    except ValidationError as err:
        problems = tuple(
            (FIELD_ENV.get(str(e["loc"][0]), str(e["loc"][0])), e["msg"]) for e in err.errors()
        )
        raise InvalidSettingsError(problems) from None
    finally:
        _ENVIRON.reset(token)


# Set only by the embedded local stack, which runs several functions in one process:
# each handler call sees its own function's environment. Unset on AWS.
_SETTINGS_OVERRIDE: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(
    "pixflare_settings_override", default=None
)


@functools.cache
def _process_settings() -> Settings:
    return settings_from_env(os.environ)


def load_settings() -> Settings:
    override = _SETTINGS_OVERRIDE.get()
    return override if override is not None else _process_settings()


# Kept so callers that clear the cache directly keep working.
load_settings.cache_clear = _process_settings.cache_clear  # type: ignore[attr-defined]


@contextlib.contextmanager
def settings_override(settings: Settings) -> Iterator[Settings]:
    """Within this block (this thread / context only), load_settings() returns ``settings``."""
    token = _SETTINGS_OVERRIDE.set(settings)
    try:
        yield settings
    finally:
        _SETTINGS_OVERRIDE.reset(token)


def reset_settings() -> None:
    _process_settings.cache_clear()
