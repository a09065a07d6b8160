"""Adding custom domains under moto: validation, ownership, tokens, the first check."""

from __future__ import annotations

import argparse
import io
import re

import pytest

from lambdas.domain.hostnames import InvalidHostnameError
from lambdas.domain.records import DomainRepository, HostnameClaimedError
from lambdas.shared.config import load_settings
from lambdas.shared.errors import ConfigError, NotFoundError
from lambdas.shared.messages import DomainCheck
from pixflare.commands import domain as domain_command
from pixflare.context import CommandContext, CommandError
from pixflare.operations import domains as admin
from tests.support.aws_resources import Resources, receive_all
from tests.support.env import use_env

TARGET = "fallback.pixflare.test"


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(
        monkeypatch,
        {
            **aws.env("domain"),
            "CUSTOM_DOMAIN_FALLBACK_CNAME": TARGET,
            "PIXFLARE_OWN_DOMAINS": "pixflare.example",
        },
    )
    return aws


def queued(env: Resources) -> list[DomainCheck]:
    return [
        DomainCheck.model_validate_json(m["Body"])
        for m in receive_all(env.queue_urls["domain"], max_messages=10)
    ]


def test_add_creates_the_record_and_queues_the_first_check(env: Resources) -> None:
    view = admin.add_domain(load_settings(), "img.Bücher.example", "alice")

    assert view.created
    assert view.check_enqueued
    assert view.record.hostname == "img.xn--bcher-kva.example"
    assert view.record.dns_records(TARGET) == [
        {"type": "CNAME", "name": "img.xn--bcher-kva.example", "value": TARGET},
        {
            "type": "TXT",
            "name": "_pixflare-verify.img.xn--bcher-kva.example",
            "value": view.record.token,
        },
    ]
    assert [(c.hostname, c.owner, c.attempt, c.round) for c in queued(env)] == [
        ("img.xn--bcher-kva.example", "alice", 1, 1)
    ]


def test_tokens_are_fresh_and_at_least_128_bits(env: Resources) -> None:
    tokens = {
        admin.add_domain(load_settings(), f"cdn{i}.example.test", "alice").record.token
        for i in range(5)
    }
    assert len(tokens) == 5
    # base64url: 6 bits a character
    assert all(len(token) * 6 >= 128 for token in tokens)


def test_same_owner_adding_again_gets_the_same_records(env: Resources) -> None:
    first = admin.add_domain(load_settings(), "cdn.example.test", "alice")
    again = admin.add_domain(load_settings(), "CDN.example.test.", "alice")
    assert not again.created
    assert again.record.token == first.record.token
    # the first check was already on the queue: no second one
    assert not again.check_enqueued
    assert len(queued(env)) == 1


def test_another_owners_hostname_is_refused(env: Resources) -> None:
    admin.add_domain(load_settings(), "cdn.example.test", "alice")
    with pytest.raises(HostnameClaimedError, match="already claimed by another owner"):
        admin.add_domain(load_settings(), "cdn.example.test", "mallory")
    stored = DomainRepository(load_settings().domains_table).get("cdn.example.test")
    assert stored is not None
    assert stored.owner == "alice"


@pytest.mark.parametrize(
    ("hostname", "reason"),
    # The full rule set is in tests/unit/test_domain_hostnames.py; here, the settings' part.
    [
        ("example.test", "apex"),
        ("img.pixflare.test", "pixflare.test is Pixflare's own domain"),
        ("a.b.pixflare.example", "pixflare.example is Pixflare's own domain"),
    ],
)
def test_invalid_hostnames_are_refused_and_nothing_is_stored(
    env: Resources, hostname: str, reason: str
) -> None:
    with pytest.raises(InvalidHostnameError, match=reason):
        admin.add_domain(load_settings(), hostname, "alice")
    assert queued(env) == []


def test_queues_disabled_keeps_the_record_and_a_later_add_queues_the_check(
    env: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, {"ENABLE_QUEUES": "false"})
    view = admin.add_domain(load_settings(), "cdn.example.test", "alice")
    assert view.created
    assert not view.check_enqueued
    assert queued(env) == []

    use_env(monkeypatch, {"ENABLE_QUEUES": "true"})
    again = admin.add_domain(load_settings(), "cdn.example.test", "alice")
    assert again.check_enqueued
    assert [c.attempt for c in queued(env)] == [1]


def test_missing_fallback_cname_is_a_clear_error(
    env: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUSTOM_DOMAIN_FALLBACK_CNAME")
    use_env(monkeypatch, {})
    with pytest.raises(ConfigError, match="CUSTOM_DOMAIN_FALLBACK_CNAME is not set"):
        admin.add_domain(load_settings(), "cdn.example.test", "alice")


def test_status_of_an_unknown_domain(env: Resources) -> None:
    with pytest.raises(NotFoundError, match=re.escape("no custom domain cdn.example.test")):
        admin.domain_status(load_settings(), "cdn.example.test")


def test_command_prints_the_records_for_people(env: Resources) -> None:
    out = io.StringIO()
    ctx = CommandContext(settings=load_settings(), stdout=out)
    args = argparse.Namespace(hostname="cdn.example.test", owner="alice")
    assert domain_command.run_add(args, ctx) == 0
    token = admin.domain_status(load_settings(), "cdn.example.test").record.token
    text = out.getvalue()
    assert "Create these DNS records for cdn.example.test" in text
    assert f"CNAME  cdn.example.test                   {TARGET}" in text
    assert f"TXT    _pixflare-verify.cdn.example.test  {token}" in text
    assert "pending (check 0 of 40)" in text


def test_command_failure_is_one_line(env: Resources) -> None:
    ctx = CommandContext(settings=load_settings(), stdout=io.StringIO())
    with pytest.raises(CommandError, match="is an apex domain"):
        domain_command.run_add(argparse.Namespace(hostname="example.test", owner="alice"), ctx)
