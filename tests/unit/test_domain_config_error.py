"""A domain check that stops on a missing setting: recorded on its domain, shown by
`domain status`, cleared by the next check recorded or a new round (in-process moto)."""

from __future__ import annotations

import argparse
import io
import json

import boto3
import pytest

from lambdas.domain import handler
from lambdas.domain.records import DomainRecord, DomainRepository
from lambdas.shared.config import load_settings
from lambdas.shared.errors import ConditionFailedError
from lambdas.shared.messages import DomainCheck
from pixflare.commands import domain as domain_command
from pixflare.context import CommandContext
from pixflare.operations import domains as admin
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext, event_from_received

HOST = "cdn.example.test"
TARGET = "fallback.pixflare.test"
OWNER = "alice"
NOW = "2026-05-01T10:00:00Z"
LATER = "2026-05-01T10:05:00Z"


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, {**aws.env("domain"), "CUSTOM_DOMAIN_FALLBACK_CNAME": TARGET})
    return aws


def repository() -> DomainRepository:
    return DomainRepository(load_settings().domains_table)


def stored(hostname: str = HOST) -> DomainRecord:
    return repository().require(hostname)


def deliver_once(env: Resources) -> dict[str, object]:
    messages = receive_all(env.queue_urls["domain"])
    assert len(messages) == 1
    return handler.handler(
        event_from_received(messages, env.queue_arns["domain"]), FakeLambdaContext()
    )


def status_of(hostname: str) -> tuple[dict[str, object], str]:
    """`pixflare domain status HOSTNAME`, as --json and as the human text."""
    printed = []
    for json_output in (True, False):
        out = io.StringIO()
        ctx = CommandContext(settings=load_settings(), json_output=json_output, stdout=out)
        assert domain_command.run_status(argparse.Namespace(hostname=hostname), ctx) == 0
        printed.append(out.getvalue())
    return json.loads(printed[0]), printed[1]


def test_a_check_stopped_by_a_missing_setting_is_recorded_and_shown(
    env: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a domain added while the CLI knew the CNAME target, and a domain worker
    # whose environment lacks it
    admin.add_domain(load_settings(), HOST, OWNER)
    use_env(monkeypatch, {"CUSTOM_DOMAIN_FALLBACK_CNAME": ""})

    # When the worker runs the first check
    response = deliver_once(env)

    # Then the message is acknowledged, not retried, and waits in the DLQ named
    assert response == {"batchItemFailures": []}
    [dead] = receive_all(env.dlq_urls["domain"])
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["pixflare-error-kind"] == "config"
    assert attributes["pixflare-reason"] == (
        "configuration: CUSTOM_DOMAIN_FALLBACK_CNAME is not set; "
        "fix the setting, then `pixflare dlq redrive domain`"
    )
    # and the domain record says which setting stopped its check, no check counted
    record = stored()
    assert (record.status, record.checks) == ("pending", 0)
    assert record.config_error == "CUSTOM_DOMAIN_FALLBACK_CNAME is not set"
    assert record.config_error_at

    # and `domain status` (where the CLI knows the target) shows it and what to do
    use_env(monkeypatch, {"CUSTOM_DOMAIN_FALLBACK_CNAME": TARGET})
    document, text = status_of(HOST)
    assert document["config_error"] == {
        "message": "CUSTOM_DOMAIN_FALLBACK_CNAME is not set",
        "at": record.config_error_at,
        "fix": "fix the setting, then `pixflare dlq redrive domain`",
    }
    assert text.splitlines()[-2:] == [
        f"  configuration error ({record.config_error_at}): "
        "CUSTOM_DOMAIN_FALLBACK_CNAME is not set",
        "  its check was moved to the domain DLQ: "
        "fix the setting, then `pixflare dlq redrive domain`",
    ]


def test_the_next_check_recorded_clears_it(env: Resources) -> None:
    admin.add_domain(load_settings(), HOST, OWNER)
    repo = repository()
    repo.record_config_error(HOST, owner=OWNER, round=1, attempt=1, error="X is not set", now=NOW)
    assert stored().config_error == "X is not set"

    # When the redriven check runs and records its result
    repo.record_check(HOST, round=1, attempt=1, status="pending", last_error="NXDOMAIN", now=LATER)

    # Then the configuration error is gone, the check's own result kept
    record = stored()
    assert (record.config_error, record.config_error_at) == (None, None)
    assert (record.checks, record.last_error) == (1, "NXDOMAIN")
    document, text = status_of(HOST)
    assert document["config_error"] is None
    assert "configuration error" not in text


def test_a_resent_followup_clears_it(env: Resources) -> None:
    admin.add_domain(load_settings(), HOST, OWNER)
    repo = repository()
    # Given check 1 recorded, its follow-up unsent, then a config error on the retry
    repo.record_check(
        HOST,
        round=1,
        attempt=1,
        status="pending",
        last_error="NXDOMAIN",
        now=NOW,
        followup_sent=False,
    )
    repo.record_config_error(HOST, owner=OWNER, round=1, attempt=1, error="X is not set", now=NOW)
    assert stored().config_error == "X is not set"
    # When the redriven retry sends the follow-up and confirms it
    repo.confirm_followup(HOST, round=1, attempt=1, now=LATER)
    # Then the error is gone
    assert stored().config_error is None


@pytest.mark.parametrize(
    ("owner", "round", "attempt"),
    [("mallory", 1, 1), (OWNER, 2, 1), (OWNER, 1, 3)],
    ids=["another owner", "another round", "a later attempt"],
)
def test_a_stale_message_never_marks_the_record(
    env: Resources, owner: str, round: int, attempt: int
) -> None:
    admin.add_domain(load_settings(), HOST, OWNER)
    with pytest.raises(ConditionFailedError):
        repository().record_config_error(
            HOST, owner=owner, round=round, attempt=attempt, error="X is not set", now=NOW
        )
    assert stored().config_error is None


def test_a_check_for_a_removed_domain_still_goes_to_the_dlq(
    env: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a check whose domain is gone, run by a worker lacking the CNAME target
    use_env(monkeypatch, {"CUSTOM_DOMAIN_FALLBACK_CNAME": ""})
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=env.queue_urls["domain"],
        MessageBody=DomainCheck(hostname=HOST, owner=OWNER, attempt=1, round=1).to_body(),
    )
    # Then the hook finds nothing to mark, and the message still goes to the DLQ
    assert deliver_once(env) == {"batchItemFailures": []}
    assert len(receive_all(env.dlq_urls["domain"])) == 1
    assert repository().get(HOST) is None
