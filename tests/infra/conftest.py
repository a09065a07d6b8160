"""Each distinct context is synthesized once per test process (infra.synth caches it)."""

from __future__ import annotations

import pytest

from infra.synth import SynthResult, synthesize
from tests.infra.support import CUSTOM, DEFAULT, DOMAINS_OFF, NAMED, QUEUES_OFF, Template


@pytest.fixture(scope="session")
def default_synth() -> SynthResult:
    return synthesize(DEFAULT)


@pytest.fixture(scope="session")
def queues_off_synth() -> SynthResult:
    return synthesize(QUEUES_OFF)


@pytest.fixture(scope="session")
def custom_synth() -> SynthResult:
    return synthesize(CUSTOM)


@pytest.fixture(scope="session")
def domains_off_synth() -> SynthResult:
    return synthesize(DOMAINS_OFF)


@pytest.fixture(scope="session")
def named_synth() -> SynthResult:
    return synthesize(NAMED)


@pytest.fixture(scope="session")
def template(default_synth: SynthResult) -> Template:
    return default_synth.template


@pytest.fixture(scope="session")
def queues_off(queues_off_synth: SynthResult) -> Template:
    return queues_off_synth.template


@pytest.fixture(scope="session")
def custom(custom_synth: SynthResult) -> Template:
    return custom_synth.template


@pytest.fixture(scope="session")
def domains_off(domains_off_synth: SynthResult) -> Template:
    return domains_off_synth.template


@pytest.fixture(scope="session")
def named(named_synth: SynthResult) -> Template:
    return named_synth.template
