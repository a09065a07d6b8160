"""Runtime settings for a test: set in the environment, then read afresh."""

from __future__ import annotations

import pytest

from lambdas.shared.config import reset_settings


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
