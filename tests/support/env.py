"""Runtime settings for a test: set in the environment, then read afresh."""

from __future__ import annotations

import pytest

from lambdas.shared.config import reset_settings

# The operator's opt-in for private and plain-http backup endpoints: in-process tests
# whose S3 targets are loopback HTTP servers set it (lambdas/shared/endpoint_policy.py).
ALLOW_PRIVATE_ENDPOINTS = {"BACKUP_ALLOW_PRIVATE_ENDPOINTS": "true"}


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
