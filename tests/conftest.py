"""Fixtures shared by every test: clean global state, fake credentials, moto resources."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import moto.kms.models
import pytest

from lambdas.shared.aws import reset_clients
from lambdas.shared.config import ENV_FIELDS, reset_settings
from lambdas.shared.worker import reset_workers
from tests.support.aws_resources import REGION, Resources, create_resources

# moto makes a fresh RSA-2048 key pair for every KMS key, even symmetric ones, which
# costs 0.1-1 s per test; one pair per key spec serves every test equally well.
moto.kms.models.generate_private_key = functools.cache(moto.kms.models.generate_private_key)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees another's settings, clients, credentials or endpoints."""
    for name in [*ENV_FIELDS, "AWS_ENDPOINT_URL", "AWS_PROFILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Pixflare")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "pixflare-test")
    reset_settings()
    reset_clients()
    reset_workers()
    yield
    reset_settings()
    reset_clients()
    reset_workers()


@pytest.fixture
def aws() -> Iterator[Resources]:
    """In-process moto with the project's tables, bucket, queues and KMS key."""
    from moto import mock_aws

    with mock_aws():
        yield create_resources()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow modules (a local stack, a CDK synth) first, the rest in their order.

    `make test` hands whole modules to two workers in collection order; a long module
    handed out last runs alone while the other worker idles. Starting with the long
    ones lets the many short ones even the two out at the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
