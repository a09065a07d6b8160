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
    ]
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
            "cloudflareApiTokenSecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:cf",
            "alarmEmail": " ops@example.com ",
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
    settings = config.AppSettings.from_context({"customDomainProvider": "cloudflare"})
    env = settings.runtime_env()
    assert set(env) == {"variant", "backup", "domain", "cron"}
    rendered = {name for function in env.values() for name in function}
    assert rendered == {spec.env for spec in config.DEPLOYED_SETTINGS}
    # Never a secret (the stack passes the secret's ARN) nor a resource name.
    assert "CLOUDFLARE_API_TOKEN" not in rendered
    assert not rendered & RESOURCE_VARIABLES
    # Each function gets only its own, and reads back what deploy time set.
    assert set(env["backup"]) == {"ENABLE_QUEUES"}
    for function in env.values():
        parsed = settings_from_env(function)
        for name in function:
            field = ENV_FIELDS[name]
            assert getattr(parsed, field) == getattr(settings.runtime, field)
