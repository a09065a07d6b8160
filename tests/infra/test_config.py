"""Context parsing (no synth): defaults, overrides and clear errors."""

from __future__ import annotations

import pytest

from infra import config


def test_defaults_match_the_brief() -> None:
    settings = config.AppSettings.from_context({})
    assert settings.enable_queues is True
    assert settings.enable_ai_classification is False
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
    assert config.AppSettings.from_context({"enableQueues": value}).enable_queues is False


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
    with pytest.raises(ValueError, match=key):
        config.AppSettings.from_context({key: value})
