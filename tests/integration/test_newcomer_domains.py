"""Custom domains on the local stack as a newcomer starts it (issue #18, point 1): the
`pixflare` console script in a shell of its own, against stacks started with runtime
settings in their own environment, as `DOMAIN_MAX_CHECKS=3 pixflare local up` does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.shared.config import RUNTIME_VARIABLES
from pixflare.local.dns import LocalDnsServer
from pixflare.local.stack import LocalStack
from tests.support.console import on_stack
from tests.support.local_stack import started_stack, wait_until

HOST = "photos.example.com"
LOCAL_FALLBACK = "edge.pixflare.localhost"  # the local stack's default CNAME target


@pytest.fixture(autouse=True)
def clean_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's shell exports no runtime setting: whatever it knows comes from the stack."""
    for name in RUNTIME_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# Each stack serves one test and stops after it: moto's backends are process-global, so
# two stacks up at once in one process would share (and reset) each other's resources.
@pytest.fixture
def three_checks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """`DOMAIN_MAX_CHECKS=3 pixflare local up`, its checks asking a loopback DNS server
    that knows no name, one right after the other."""
    with (
        LocalDnsServer() as dns,
        started_stack(
            tmp_path_factory,
            "three-checks",
            env={
                "DOMAIN_MAX_CHECKS": "3",
                "DOMAIN_CHECK_INTERVAL_SECONDS": "0",
                "PIXFLARE_DNS_NAMESERVERS": dns.nameserver,
                "PIXFLARE_BACKOFF_BASE_SECONDS": "0",
            },
        ) as stack,
    ):
        yield stack


@pytest.fixture
def no_fallback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack whose shell emptied CUSTOM_DOMAIN_FALLBACK_CNAME: its domain worker lacks
    a setting it needs (checked only when a check runs)."""
    with started_stack(
        tmp_path_factory,
        "no-fallback",
        env={"CUSTOM_DOMAIN_FALLBACK_CNAME": "", "PIXFLARE_BACKOFF_BASE_SECONDS": "0"},
    ) as stack:
        yield stack


def status_json(stack: LocalStack, hostname: str, env: dict[str, str] | None = None) -> Any:
    done = on_stack(stack, "--json", "domain", "status", hostname, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_cli_uses_the_settings_the_stack_runs_with(three_checks: LocalStack) -> None:
    # Given a stack started with DOMAIN_MAX_CHECKS=3, and a shell that exports nothing
    # When a newcomer adds a domain
    added = on_stack(three_checks, "domain", "add", HOST, "--owner", "me")

    # Then it works, with the stack's own CNAME target and check limit
    assert added.returncode == 0, added.stderr
    assert added.stderr == ""
    assert f"CNAME  {HOST}" in added.stdout and LOCAL_FALLBACK in added.stdout
    assert f"{HOST}: pending (check 0 of 3)" in added.stdout

    # and once the stack's three checks are done, the CLI counts them out of three
    failed = wait_until(
        lambda: (view := status_json(three_checks, HOST))["status"] == "failed" and view,
        "the domain to fail after its three checks",
    )
    assert (failed["checks"], failed["max_checks"]) == (3, 3)
    assert failed["config_error"] is None
    shown = on_stack(three_checks, "domain", "status", HOST)
    assert shown.returncode == 0, shown.stderr
    assert f"{HOST}: failed (check 3 of 3)" in shown.stdout
    assert "last result: not verified after 3 checks" in shown.stdout


def test_a_worker_configuration_error_is_shown_and_named_in_the_dlq(
    no_fallback: LocalStack,
) -> None:
    # Given a stack whose shell emptied CUSTOM_DOMAIN_FALLBACK_CNAME, the CLI agrees with
    # its workers: a clean shell cannot add a domain, and is told which setting is missing
    refused = on_stack(no_fallback, "domain", "add", HOST, "--owner", "me")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr == "pixflare: CUSTOM_DOMAIN_FALLBACK_CNAME is not set\n"

    # When the CLI's own shell sets it (the caller's environment wins), the add works
    cli_env = {"CUSTOM_DOMAIN_FALLBACK_CNAME": LOCAL_FALLBACK}
    added = on_stack(no_fallback, "domain", "add", HOST, "--owner", "me", env=cli_env)
    assert added.returncode == 0, added.stderr

    # Then the worker's check stops on the missing setting, and `domain status` says so
    view = wait_until(
        lambda: (view := status_json(no_fallback, HOST, cli_env))["config_error"] and view,
        "domain status to show the worker's configuration error",
    )
    assert (view["status"], view["checks"]) == ("pending", 0)
    assert view["config_error"]["message"] == "CUSTOM_DOMAIN_FALLBACK_CNAME is not set"
    assert view["config_error"]["at"]
    assert view["config_error"]["fix"] == "fix the setting, then `pixflare dlq redrive domain`"
    shown = on_stack(no_fallback, "domain", "status", HOST, env=cli_env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"{HOST}: pending (check 0 of 40)" in lines
    assert any(
        line.startswith("  configuration error (")
        and line.endswith("): CUSTOM_DOMAIN_FALLBACK_CNAME is not set")
        for line in lines
    ), shown.stdout
    assert (
        "  its check was moved to the domain DLQ: "
        "fix the setting, then `pixflare dlq redrive domain`" in lines
    )

    # and the check waits in the domain DLQ at once, its reason naming the setting
    sqs = no_fallback.client("sqs")

    def dead_letters() -> list[dict[str, Any]]:
        return list(
            sqs.receive_message(
                QueueUrl=no_fallback.outputs["DomainDlqUrl"],
                MaxNumberOfMessages=10,
                VisibilityTimeout=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        )

    [dead] = wait_until(dead_letters, "the check in the domain DLQ", seconds=30)
    assert json.loads(dead["Body"])["hostname"] == HOST
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["pixflare-error-kind"] == "config"
    assert attributes["pixflare-reason"] == (
        "configuration: CUSTOM_DOMAIN_FALLBACK_CNAME is not set; "
        "fix the setting, then `pixflare dlq redrive domain`"
    )
