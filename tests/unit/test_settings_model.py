"""The settings model is the one place a setting is declared: README's table follows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lambdas.shared.config import (
    ENV_FIELDS,
    RESOURCE_VARIABLES,
    RUNTIME_VARIABLES,
    SETTINGS,
    Settings,
    SettingSpec,
    env_value,
    load_settings,
    reset_settings,
    settings_from_env,
)
from lambdas.shared.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| variable | CDK context | default | meaning |"
CODE = re.compile(r"`([^`]+)`")


def readme_rows() -> list[list[str]]:
    """The cells of each row of README's Configuration table."""
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    lines = section[section.index(HEADER) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def documented() -> list[SettingSpec]:
    """The settings README must list: every one a user or deploy time may set."""
    return [spec for spec in SETTINGS.values() if spec.context or not spec.resource]


def readme_default(spec: SettingSpec) -> str:
    if spec.shown_default is not None:
        return spec.shown_default
    if spec.secret or spec.default in ("", (), None):
        return ""
    return f"`{env_value(spec.default)}`"


def test_readme_lists_every_setting_once_in_the_models_order() -> None:
    variables = []
    for cells in readme_rows():
        assert len(cells) == 4, cells
        names = CODE.findall(cells[0])
        assert len(names) == 1, f"one variable per row: {cells[0]}"
        variables.append(names[0])
    assert variables == [spec.env for spec in documented()]


@pytest.mark.parametrize("spec", documented(), ids=lambda spec: spec.env)
def test_readme_row_matches_the_model(spec: SettingSpec) -> None:
    rows = {CODE.findall(cells[0])[0]: cells for cells in readme_rows()}
    _, context, default, meaning = rows[spec.env]
    assert CODE.findall(context) == ([spec.context] if spec.context else [])
    assert default == readme_default(spec)
    assert meaning == spec.doc


def test_each_setting_has_one_variable_and_context_key() -> None:
    envs = [spec.env for spec in SETTINGS.values()]
    contexts = [spec.context for spec in SETTINGS.values() if spec.context]
    assert len(set(envs)) == len(envs)
    assert len(set(contexts)) == len(contexts)
    assert set(ENV_FIELDS) == set(envs)
    assert set(envs) == RESOURCE_VARIABLES | RUNTIME_VARIABLES
    assert not RESOURCE_VARIABLES & RUNTIME_VARIABLES
    assert all(spec.doc for spec in SETTINGS.values())


def test_resources_are_set_by_the_stack_not_by_the_shell() -> None:
    tables = {
        "IMAGES_TABLE",
        "DOMAINS_TABLE",
        "STATS_TABLE",
        "DESTINATIONS_TABLE",
        "API_KEYS_TABLE",
    }
    queues = {
        "VARIANT_QUEUE_URL",
        "BACKUP_QUEUE_URL",
        "DOMAIN_QUEUE_URL",
        "CRON_QUEUE_URL",
        "INGEST_QUEUE_URL",
    }
    expected = {
        *tables,
        *queues,
        "IDEMPOTENCY_TABLE",
        "IMAGES_BUCKET",
        "QUEUE_URL",
        "DLQ_URL",
        "BACKUP_KMS_KEY_ID",
        "CLOUDFLARE_API_TOKEN_SECRET_ARN",
    }
    assert expected == RESOURCE_VARIABLES
    # Of them, only the token's secret may be named at deploy time (an existing one).
    assert [spec.env for spec in SETTINGS.values() if spec.resource and spec.context] == [
        "CLOUDFLARE_API_TOKEN_SECRET_ARN"
    ]


def test_bounds_are_declared_with_the_setting() -> None:
    bounds = {name: (spec.ge, spec.le) for name, spec in SETTINGS.items()}
    assert bounds["ai_max_labels"] == (1, 1000)
    assert bounds["ai_min_classification_score"] == (0.0, 1.0)
    assert bounds["domain_check_interval_seconds"] == (0, 900)
    assert bounds["backoff_base_seconds"] == (0, 900)
    for spec in SETTINGS.values():
        step = 1 if spec.field != "ai_min_classification_score" else 0.5
        for outside in (
            None if spec.ge is None else spec.ge - step,
            None if spec.le is None else spec.le + step,
        ):
            if outside is not None:
                with pytest.raises(ConfigError, match=spec.env):
                    settings_from_env({spec.env: env_value(outside)})


def test_rendered_values_parse_back_to_themselves() -> None:
    values = {
        "enable_queues": False,
        "ai_min_classification_score": 0.35,
        "dns_nameservers": ("127.0.0.1:5353", "10.0.0.2"),
        "custom_domain_provider": "cloudflare",
        "backoff_base_seconds": 0,
    }
    settings = Settings.model_validate(values)
    environ = {
        spec.env: env_value(getattr(settings, spec.field))
        for spec in SETTINGS.values()
        if not spec.secret
    }
    assert settings_from_env(environ) == settings


def test_a_secret_is_never_rendered() -> None:
    settings = settings_from_env({"CLOUDFLARE_API_TOKEN": "very-secret"})
    with pytest.raises(TypeError):
        env_value(settings.cloudflare_api_token)


def test_settings_from_env_reads_only_the_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_QUEUES", "false")
    monkeypatch.setenv("IMAGES_BUCKET", "from-the-shell")
    assert settings_from_env({}).enable_queues is True
    assert settings_from_env({}).images_bucket == ""
    reset_settings()
    assert load_settings().enable_queues is False
    assert load_settings().images_bucket == "from-the-shell"
    # Variables are matched exactly, as the contract spells them.
    assert settings_from_env({"enable_queues": "false"}).enable_queues is True
