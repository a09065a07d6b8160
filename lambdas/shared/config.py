"""Runtime settings, parsed once from the environment into a typed model.

Every function reads its settings through :func:`load_settings`; tests and the
local stack change the environment and call :func:`reset_settings`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from lambdas.shared.errors import ConfigError

# Environment variable -> field name. The names are a public contract (design brief).
ENV_FIELDS: dict[str, str] = {
    "ENABLE_QUEUES": "enable_queues",
    "ENABLE_AI_CLASSIFICATION": "enable_ai_classification",
    "AI_MAX_LABELS": "ai_max_labels",
    "AI_MIN_CLASSIFICATION_SCORE": "ai_min_classification_score",
    "AI_IMAGE_WIDTH": "ai_image_width",
    "MAX_IMAGE_PIXELS": "max_image_pixels",
    "SOFT_DELETE_RETENTION_DAYS": "soft_delete_retention_days",
    "DOMAIN_CHECK_INTERVAL_SECONDS": "domain_check_interval_seconds",
    "DOMAIN_MAX_CHECKS": "domain_max_checks",
    "CUSTOM_DOMAIN_FALLBACK_CNAME": "custom_domain_fallback_cname",
    "PIXFLARE_DNS_NAMESERVERS": "dns_nameservers",
    "PIXFLARE_OWN_DOMAINS": "own_domains",
    "CUSTOM_DOMAIN_PROVIDER": "custom_domain_provider",
    "CLOUDFLARE_API_BASE": "cloudflare_api_base",
    "CLOUDFLARE_ZONE_ID": "cloudflare_zone_id",
    "CLOUDFLARE_API_TOKEN": "cloudflare_api_token",
    "CLOUDFLARE_API_TOKEN_SECRET_ARN": "cloudflare_api_token_secret_arn",
    "BACKUP_SYNC_LIMIT": "backup_sync_limit",
    "BACKUP_VERIFY_SAMPLE": "backup_verify_sample",
    "PIXFLARE_BACKOFF_BASE_SECONDS": "backoff_base_seconds",
    "IMAGES_BUCKET": "images_bucket",
    "IMAGES_TABLE": "images_table",
    "DOMAINS_TABLE": "domains_table",
    "STATS_TABLE": "stats_table",
    "DESTINATIONS_TABLE": "destinations_table",
    "IDEMPOTENCY_TABLE": "idempotency_table",
    "VARIANT_QUEUE_URL": "variant_queue_url",
    "BACKUP_QUEUE_URL": "backup_queue_url",
    "DOMAIN_QUEUE_URL": "domain_queue_url",
    "CRON_QUEUE_URL": "cron_queue_url",
    "QUEUE_URL": "queue_url",
    "DLQ_URL": "dlq_url",
    "BACKUP_KMS_KEY_ID": "backup_kms_key_id",
}
FIELD_ENV: dict[str, str] = {field: env for env, field in ENV_FIELDS.items()}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Settings(BaseModel):
    """What a function may be told through its environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enable_queues: bool = True
    enable_ai_classification: bool = False
    ai_max_labels: int = Field(default=10, ge=1, le=1000)
    ai_min_classification_score: float = Field(default=0.1, ge=0.0, le=1.0)
    ai_image_width: int = Field(default=384, ge=64, le=4096)
    max_image_pixels: int = Field(default=100_000_000, ge=1)
    soft_delete_retention_days: int = Field(default=30, ge=0)
    domain_check_interval_seconds: int = Field(default=30, ge=0, le=900)
    domain_max_checks: int = Field(default=40, ge=1)
    custom_domain_fallback_cname: str = ""
    dns_nameservers: tuple[str, ...] = ()
    # Domains users may not claim as custom domains (besides the fallback CNAME's own).
    own_domains: tuple[str, ...] = ()
    custom_domain_provider: Literal["dns-only", "cloudflare"] = "dns-only"
    cloudflare_api_base: str = "https://api.cloudflare.com/client/v4"
    cloudflare_zone_id: str = ""
    cloudflare_api_token: SecretStr = SecretStr("")
    cloudflare_api_token_secret_arn: str = ""
    backup_sync_limit: int = Field(default=100, ge=1)
    backup_verify_sample: int = Field(default=20, ge=0)
    # First retry delay of a failed record; unset: the worker's 30 s. The local stack and
    # the demo set 0, so a poison message walks its receives in seconds.
    backoff_base_seconds: int | None = Field(default=None, ge=0, le=900)

    images_bucket: str = ""
    images_table: str = ""
    domains_table: str = ""
    stats_table: str = ""
    destinations_table: str = ""
    idempotency_table: str = ""
    variant_queue_url: str = ""
    backup_queue_url: str = ""
    domain_queue_url: str = ""
    cron_queue_url: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    backup_kms_key_id: str = ""

    @field_validator("enable_queues", "enable_ai_classification", mode="before")
    @classmethod
    def _parse_bool(cls, value: object) -> object:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        return value

    @field_validator("dns_nameservers", mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("own_domains", mode="before")
    @classmethod
    def _parse_own_domains(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def require(self, field: str) -> str:
        """The value of a resource setting, or a ConfigError naming its variable."""
        value = getattr(self, field)
        if not value:
            raise ConfigError(f"{FIELD_ENV.get(field, field)} is not set")
        return str(value)


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    values = {field: environ[env] for env, field in ENV_FIELDS.items() if env in environ}
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(
            f"{FIELD_ENV.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


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
