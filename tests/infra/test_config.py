"""Context parsing (no synth): defaults, overrides and clear errors."""

from __future__ import annotations

import pytest

from infra import config
from lambdas.shared.config import ENV_FIELDS, RESOURCE_VARIABLES, SETTINGS, settings_from_env


def test_defaults_match_the_brief() -> None:
    settings = config.AppSettings.from_context({})
    assert settings.runtime.enable_queues is True
    assert settings.runtime.enable_ai_classification is False
    assert settings.alarm_email == ""
    assert settings.schedules == {
        "cleanup": "cron(0 1 * * ? *)",
        "analytics": "cron(0 2 * * ? *)",
        "backup-sync": "cron(0 3 * * ? *)",
    }
    env = settings.runtime_env()
    assert env["variant"]["AI_MAX_LABELS"] == "10"
    assert env["domain"]["DOMAIN_MAX_CHECKS"] == "40"
    assert env["cron"]["SOFT_DELETE_RETENTION_DAYS"] == "30"


def test_worker_numbers() -> None:
    assert [(w.batch_size, w.timeout_seconds) for w in config.WORKERS] == [
        (5, 30),
        (10, 60),
        (5, 30),
        (10, 30),  # ingest
    ]
    assert config.INGEST.batching_window_seconds == 0  # users wait for it
    assert (config.API.timeout_seconds, config.API.memory_mb) == (10, 512)
    assert (config.API_THROTTLE_RATE, config.API_THROTTLE_BURST) == (50, 100)
    assert all(w.visibility_timeout_seconds == 6 * w.timeout_seconds for w in config.WORKERS)
    assert config.CRON.timeout_seconds == 300
    assert config.MAX_RECEIVE_COUNT == 3
    assert config.DLQ_RETENTION_DAYS > config.SOURCE_RETENTION_DAYS


@pytest.mark.parametrize("value", [False, "false", "FALSE", "0", "no"])
def test_enable_queues_false_spellings(value: object) -> None:
    assert config.AppSettings.from_context({"enableQueues": value}).runtime.enable_queues is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("enableQueues", "maybe"),
        ("aiMaxLabels", "ten"),
        ("aiMinClassificationScore", "1.5"),
        ("domainCheckIntervalSeconds", "901"),
        ("customDomainProvider", "route53"),
        ("cleanupSchedule", "every day"),
    ],
)
def test_bad_context_names_its_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"context {key}: .*{value}"):
        config.AppSettings.from_context({key: value})


def test_context_defaults_are_the_models() -> None:
    assert config.AppSettings.from_context({}).runtime == settings_from_env({})
    assert config.AppSettings.from_context({"aiMaxLabels": None}).runtime.ai_max_labels == 10


def test_context_values_are_parsed_like_the_environment() -> None:
    settings = config.AppSettings.from_context(
        {
            "enableAiClassification": True,  # cdk.json: JSON types
            "aiMaxLabels": 7,
            "aiMinClassificationScore": " 0.35 ",  # -c: strings
            "dnsNameservers": " 1.1.1.1 , 8.8.8.8:53 ",
            "customDomainProvider": "cloudflare",
            "customDomainFallbackCname": "images.example.com",
            "cloudflareZoneId": "z1",
            "cloudflareApiTokenSecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:cf",
            "alarmEmail": " ops@example.com ",
            "concurrencyBudget": 12,
        }
    )
    runtime = settings.runtime
    assert runtime.enable_ai_classification is True
    assert runtime.ai_max_labels == 7
    assert runtime.ai_min_classification_score == 0.35
    assert runtime.dns_nameservers == ("1.1.1.1", "8.8.8.8:53")
    assert runtime.cloudflare_api_token_secret_arn.endswith(":secret:cf")
    assert settings.uses_cloudflare
    assert settings.alarm_email == "ops@example.com"
    env = settings.runtime_env()
    assert env["variant"]["AI_MIN_CLASSIFICATION_SCORE"] == "0.35"
    assert env["domain"]["PIXFLARE_DNS_NAMESERVERS"] == "1.1.1.1,8.8.8.8:53"


def test_every_context_key_is_read() -> None:
    keys = set(config.CONTEXT_KEYS)
    assert {spec.context for spec in SETTINGS.values() if spec.context} <= keys
    assert {"alarmEmail", "cleanupSchedule", "analyticsSchedule", "backupSyncSchedule"} <= keys
    assert len(keys) == len(config.CONTEXT_KEYS)


def test_rendered_environment_is_the_deployed_settings_only() -> None:
    settings = config.AppSettings.from_context(
        {
            "customDomainProvider": "cloudflare",
            "customDomainFallbackCname": "images.example.com",
            "cloudflareZoneId": "z1",
            "concurrencyBudget": "12",
        }
    )
    env = settings.runtime_env()
    assert set(env) == {"variant", "backup", "domain", "cron", "ingest", "api"}
    rendered = {name for function in env.values() for name in function}
    assert rendered == {spec.env for spec in config.DEPLOYED_SETTINGS}
    # Never a secret (the stack passes the secret's ARN) nor a resource name.
    assert "CLOUDFLARE_API_TOKEN" not in rendered
    assert not rendered & RESOURCE_VARIABLES
    # Each function gets only its own, and reads back what deploy time set.
    assert set(env["backup"]) == {"ENABLE_QUEUES", "BACKUP_ALLOW_PRIVATE_ENDPOINTS"}
    assert set(env["ingest"]) == {"ENABLE_QUEUES"}
    assert set(env["api"]) == {"ENABLE_QUEUES", "FRONTEND_ORIGINS"}
    for function in env.values():
        parsed = settings_from_env(function)
        for name in function:
            field = ENV_FIELDS[name]
            assert getattr(parsed, field) == getattr(settings.runtime, field)


# With custom domains the stack has five mappings: 11 at least (see test_concurrency_split).
CNAME = {"customDomainFallbackCname": "images.example.com", "concurrencyBudget": "12"}
CLOUDFLARE = {**CNAME, "customDomainProvider": "cloudflare", "cloudflareZoneId": "z1"}


@pytest.mark.parametrize(
    ("context", "key", "reason"),
    [
        # variant, backup, domain, ingest and cron: 5 x 2 + 1 for the scheduled runs.
        (
            {**CNAME, "concurrencyBudget": "10"},
            "concurrencyBudget",
            "10 is too small.*5 event source mappings.*11 in all",
        ),
        ({"concurrencyBudget": "8"}, "concurrencyBudget", "4 event source mappings.*9 in all"),
        ({"enableQueues": "false", "concurrencyBudget": "2"}, "concurrencyBudget", "3 in all"),
        ({"concurrencyBudget": "ten"}, "concurrencyBudget", "expected a whole number"),
        ({"concurrencyBudget": "-5"}, "concurrencyBudget", "expected a whole number"),
        ({"stackName": "pix_flare"}, "stackName", "not a CloudFormation stack name"),
        ({"stackName": "1pix"}, "stackName", "not a CloudFormation stack name"),
        ({"stackName": "P" * 69}, "stackName", "69 characters; at most 68"),
        ({"customDomainProvider": "cloudflare"}, "cloudflareZoneId", "required with"),
        (
            {"customDomainProvider": "cloudflare", "cloudflareZoneId": "z1"},
            "customDomainFallbackCname",
            "required with customDomainProvider=cloudflare",
        ),
        (
            {**CLOUDFLARE, "cloudflareApiBase": "api.cloudflare.com"},
            "cloudflareApiBase",
            "http\\(s\\) URL",
        ),
        ({"customDomainFallbackCname": "https://cdn/"}, "customDomainFallbackCname", "label"),
        ({**CNAME, "dnsNameservers": "1.1.1.1:dns"}, "dnsNameservers", "bad port"),
        ({**CNAME, "ownDomains": "exa mple.com"}, "ownDomains", "exa mple"),
        ({"frontendOrigins": "https://photos.example.com/"}, "frontendOrigins", "not an origin"),
        ({"frontendOrigins": "*"}, "frontendOrigins", "not an origin"),
        ({"frontendOrigins": "photos.example.com"}, "frontendOrigins", "not an origin"),
    ],
)
def test_a_context_that_cannot_work_is_refused_naming_its_option(
    context: dict[str, str], key: str, reason: str
) -> None:
    with pytest.raises(config.ContextError, match=f"^context {key}: .*{reason}") as caught:
        config.AppSettings.from_context(context)
    assert "\n" not in str(caught.value)


def test_stack_name_and_budget_defaults() -> None:
    settings = config.AppSettings.from_context({})
    assert settings.stack_name == config.STACK_NAME == "PixflareJobs"
    assert settings.concurrency_budget == config.DEFAULT_CONCURRENCY_BUDGET == 10
    assert config.AppSettings.from_context({"stackName": "P" * 68}).stack_name == "P" * 68
    # Without a CNAME target custom domains are left out, not deployed to fail.
    assert not settings.domains_enabled
    assert config.DOMAIN not in settings.queue_workers
    assert config.AppSettings.from_context(CNAME).domains_enabled
    assert config.AppSettings.from_context(CLOUDFLARE).uses_cloudflare
    # With queues off nothing about custom domains can fail.
    off = config.AppSettings.from_context(
        {"enableQueues": "false", "customDomainProvider": "cloudflare"}
    )
    assert off.concurrency == {"cron": 2}


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        # shares variant 3, backup 2, domain 1, ingest 1 (cron: the minimum)
        (11, {"variant": 2, "backup": 2, "domain": 2, "ingest": 2, "cron": 2}),
        (12, {"variant": 3, "backup": 2, "domain": 2, "ingest": 2, "cron": 2}),
        (17, {"variant": 4, "backup": 4, "domain": 3, "ingest": 3, "cron": 2}),
        (20, {"variant": 6, "backup": 5, "domain": 3, "ingest": 3, "cron": 2}),
        (5000, {"variant": 1000, "backup": 1000, "domain": 715, "ingest": 715, "cron": 2}),
    ],
)
def test_concurrency_split(budget: int, expected: dict[str, int]) -> None:
    got = config.AppSettings.from_context({**CNAME, "concurrencyBudget": budget}).concurrency
    assert got == expected
    assert sum(got.values()) + config.SCHEDULED_CONCURRENCY <= budget
    assert all(
        config.MIN_MAPPING_CONCURRENCY <= v <= config.MAX_MAPPING_CONCURRENCY for v in got.values()
    )


def test_the_default_stack_fits_the_default_budget() -> None:
    """cdk.json's defaults (no custom domains): 4 mappings at 2 + 1 scheduled = 9 of 10;
    the one left goes to the variant mapping."""
    settings = config.AppSettings.from_context({})
    assert settings.concurrency == {"variant": 3, "backup": 2, "ingest": 2, "cron": 2}
    assert sum(settings.concurrency.values()) + config.SCHEDULED_CONCURRENCY == 10
    assert config.INGEST in settings.queue_workers
    off = config.AppSettings.from_context({"enableQueues": "false"})
    assert off.queue_workers == ()


def test_frontend_origins_are_a_comma_list() -> None:
    assert config.AppSettings.from_context({}).frontend_origins == ()
    settings = config.AppSettings.from_context(
        {"frontendOrigins": " https://photos.example.com , http://localhost:8000 "}
    )
    assert settings.frontend_origins == ("https://photos.example.com", "http://localhost:8000")
    env = settings.runtime_env()
    assert env["api"]["FRONTEND_ORIGINS"] == "https://photos.example.com,http://localhost:8000"
    assert all("FRONTEND_ORIGINS" not in env[key] for key in env if key != "api")


def test_the_images_table_gains_one_index_at_a_time() -> None:
    """CloudFormation creates one GSI per table update: by-album is the one new index."""
    (images,) = [spec for spec in config.TABLES if spec.key == "Images"]
    assert images.indexes[-1] == config.IndexSpec("by-album", "album_key", "created_at")
    assert [index.name for index in images.indexes] == [
        "by-owner",
        "by-deleted",
        "by-backup-state",
        "by-album",
    ]
