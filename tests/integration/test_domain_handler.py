"""The domain queue end to end: moto queues and table, a real DNS server and a real
Cloudflare-like HTTP server on loopback, the handler driven as Lambda's poller would."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from lambdas.domain import handler
from lambdas.domain.providers import TOKEN_PLACEHOLDER
from lambdas.domain.records import DomainRecord, DomainRepository
from lambdas.shared import aws, observability, worker
from lambdas.shared.config import load_settings
from lambdas.shared.messages import DomainCheck
from pixflare.commands import domain as domain_command
from pixflare.context import CommandContext
from pixflare.operations import domains as admin
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.cloudflare_api import FakeCloudflare
from tests.support.dns_server import LoopbackDnsServer, TestZone
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext, event_from_received

HOST = "cdn.example.test"
TARGET = "fallback.pixflare.test"
OWNER = "alice"
MAX_DELIVERIES = 20  # every drive loop is bounded


@pytest.fixture
def zone() -> TestZone:
    zone = TestZone("example.test", "pixflare.test")
    zone.set(TARGET, "A", "192.0.2.10")
    return zone


@pytest.fixture
def dns_server(zone: TestZone) -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer(zone) as server:
        yield server


@pytest.fixture
def env(
    aws: Resources, dns_server: LoopbackDnsServer, monkeypatch: pytest.MonkeyPatch
) -> Resources:
    use_env(
        monkeypatch,
        {
            **aws.env("domain"),
            "CUSTOM_DOMAIN_FALLBACK_CNAME": TARGET,
            "PIXFLARE_DNS_NAMESERVERS": dns_server.nameserver,
            "DOMAIN_CHECK_INTERVAL_SECONDS": "0",
            "DOMAIN_MAX_CHECKS": "3",
        },
    )
    # A transient failure's message comes back at once instead of after 30 s.
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)
    return aws


@pytest.fixture
def cloudflare(env: Resources, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudflare]:
    with FakeCloudflare() as fake:
        use_env(
            monkeypatch,
            {
                "CUSTOM_DOMAIN_PROVIDER": "cloudflare",
                "CLOUDFLARE_API_BASE": fake.api_base,
                "CLOUDFLARE_ZONE_ID": fake.zone_id,
                "CLOUDFLARE_API_TOKEN": fake.token,
            },
        )
        yield fake


@pytest.fixture
def sent_delays() -> list[int]:
    """DelaySeconds of every SendMessage (the call still reaches moto)."""
    delays: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        delays.append(int(params.get("DelaySeconds", 0)))

    aws.sqs().meta.events.register("provide-client-params.sqs.SendMessage", hook)
    return delays


def deliver(env: Resources) -> dict[str, Any] | None:
    """One poll of the domain queue into the handler; deletes what succeeded, like Lambda."""
    queue = env.queue_urls["domain"]
    messages = receive_all(queue, max_messages=5)
    if not messages:
        return None
    response = handler.handler(
        event_from_received(messages, env.queue_arns["domain"]), FakeLambdaContext()
    )
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    sqs = boto3.client("sqs", region_name=REGION)
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return response


def drive(env: Resources) -> int:
    """Deliver until the queue is empty; the number of deliveries."""
    for count in range(MAX_DELIVERIES):
        if deliver(env) is None:
            return count
    raise AssertionError("the domain queue never drained")


def record(hostname: str = HOST) -> DomainRecord:
    found = DomainRepository(load_settings().domains_table).get(hostname)
    assert found is not None
    return found


def create_records(zone: TestZone, view: admin.DomainView) -> None:
    for dns_record in view.record.dns_records(view.target):
        zone.set(dns_record["name"], dns_record["type"], dns_record["value"])


def run_command(func: Any, **arguments: Any) -> dict[str, Any]:
    out = io.StringIO()
    ctx = CommandContext(settings=load_settings(), json_output=True, stdout=out)
    assert func(argparse.Namespace(**arguments), ctx) == 0
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


def queued_checks(env: Resources) -> list[DomainCheck]:
    return [
        DomainCheck.model_validate_json(m["Body"])
        for m in receive_all(env.queue_urls["domain"], max_messages=10)
    ]


# -- the user's path -----------------------------------------------------------------------
def test_new_user_adds_a_domain_creates_records_and_sees_it_active(
    env: Resources, zone: TestZone
) -> None:
    # Given a user adds their subdomain
    added = run_command(domain_command.run_add, hostname="CDN.Example.test", owner=OWNER)
    assert added["hostname"] == HOST
    assert added["status"] == "pending"
    cname, txt = added["records"]
    assert cname == {"type": "CNAME", "name": HOST, "value": TARGET}
    assert txt["type"] == "TXT"
    assert txt["name"] == f"_pixflare-verify.{HOST}"
    assert len(txt["value"]) >= 22  # at least 128 bits, base64url

    # When the first check runs before they created anything
    assert deliver(env) == {"batchItemFailures": []}
    status = run_command(domain_command.run_status, hostname=HOST)
    assert (status["status"], status["checks"]) == ("pending", 1)
    assert "NXDOMAIN" in status["last_error"]

    # And they then create the two records on their DNS server
    for item in added["records"]:
        zone.set(item["name"], item["type"], item["value"])
    assert drive(env) == 1

    # Then the next check finds them and the domain is active
    status = run_command(domain_command.run_status, hostname=HOST)
    assert status["status"] == "active"
    assert status["checks"] == 2
    assert status["last_error"] is None
    assert status["provider"] == "dns-only"
    assert queued_checks(env) == []


def test_never_valid_domain_fails_after_exactly_max_checks(
    env: Resources, zone: TestZone, sent_delays: list[int]
) -> None:
    # Given a domain whose CNAME points elsewhere for good (max 3 checks, interval 0)
    view = admin.add_domain(load_settings(), HOST, OWNER)
    zone.set(HOST, "CNAME", "elsewhere.example.net")
    zone.set(f"_pixflare-verify.{HOST}", "TXT", view.record.token)

    # When the queue is drained
    deliveries = drive(env)

    # Then exactly three checks ran and the domain failed with the last reason
    assert deliveries == 3
    assert [q for q in zone.queries if q[:2] == (HOST, "CNAME")] == [(HOST, "CNAME", "udp")] * 3
    final = record()
    assert final.status == "failed"
    assert final.checks == 3
    assert final.last_error == (
        "not verified after 3 checks: "
        f"CNAME {HOST} points to elsewhere.example.net, expected {TARGET}"
    )
    # first check (add) + two re-checks, each re-check delayed by the interval
    assert sent_delays == [0, 0, 0]


def test_recheck_is_sent_with_the_interval_as_delay(
    env: Resources, monkeypatch: pytest.MonkeyPatch, sent_delays: list[int]
) -> None:
    use_env(monkeypatch, {"DOMAIN_CHECK_INTERVAL_SECONDS": "30"})
    admin.add_domain(load_settings(), HOST, OWNER)
    deliver(env)
    assert sent_delays == [0, 30]
    # moto honours the delay: the re-check is not visible yet
    assert receive_all(env.queue_urls["domain"]) == []
    assert record().checks == 1


def test_recheck_starts_a_new_round_and_old_messages_are_ignored(
    env: Resources, zone: TestZone
) -> None:
    view = admin.add_domain(load_settings(), HOST, OWNER)
    drive(env)
    assert record().status == "failed"

    # When the user fixes DNS and asks for a new round
    create_records(zone, view)
    rechecked = run_command(domain_command.run_recheck, hostname=HOST)
    assert (rechecked["status"], rechecked["checks"], rechecked["round"]) == ("pending", 0, 2)
    # and a stray check from round 1 arrives too
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=env.queue_urls["domain"],
        MessageBody=DomainCheck(hostname=HOST, owner=OWNER, attempt=2, round=1).to_body(),
    )
    drive(env)

    final = record()
    assert (final.status, final.round, final.checks) == ("active", 2, 1)


def test_recheck_of_a_pending_domain_is_refused(env: Resources) -> None:
    admin.add_domain(load_settings(), HOST, OWNER)
    with pytest.raises(admin.RecheckRefusedError, match="already being checked"):
        admin.recheck_domain(load_settings(), HOST)


# -- safe to run twice ----------------------------------------------------------------------
def test_duplicate_delivery_does_nothing_twice(
    env: Resources, monkeypatch: pytest.MonkeyPatch, zone: TestZone
) -> None:
    # Without the idempotency table the record's conditions alone must hold
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    use_env(monkeypatch, {})
    admin.add_domain(load_settings(), HOST, OWNER)
    # the same first check sent a second time
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=env.queue_urls["domain"],
        MessageBody=DomainCheck(hostname=HOST, owner=OWNER, attempt=1).to_body(),
    )
    response = deliver(env)
    assert response == {"batchItemFailures": []}

    # One check counted, one re-check queued
    assert record().checks == 1
    assert [(c.attempt, c.round) for c in queued_checks(env)] == [(2, 1)]


def test_lost_followup_send_is_resent_on_retry(env: Resources, zone: TestZone) -> None:
    admin.add_domain(load_settings(), HOST, OWNER)
    failures = {"left": 1}

    def fail_once(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise EndpointConnectionError(endpoint_url="https://sqs.test")

    # Given the re-check's send fails once (after the check was recorded)
    aws.sqs().meta.events.register("before-call.sqs.SendMessage", fail_once)
    first = deliver(env)
    assert first is not None
    assert len(first["batchItemFailures"]) == 1
    assert (record().checks, record().followup_sent) == (1, False)

    # When the message comes back
    assert deliver(env) == {"batchItemFailures": []}

    # Then only the follow-up was sent: DNS was asked once, one re-check is queued
    assert [q for q in zone.queries if q[:2] == (HOST, "CNAME")] == [(HOST, "CNAME", "udp")]
    assert (record().checks, record().followup_sent) == (1, True)
    assert [c.attempt for c in queued_checks(env)] == [2]


def test_check_for_a_removed_record_is_dropped(env: Resources) -> None:
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=env.queue_urls["domain"],
        MessageBody=DomainCheck(hostname="gone.example.test", owner=OWNER, attempt=1).to_body(),
    )
    assert drive(env) == 1
    assert receive_all(env.dlq_urls["domain"]) == []


# -- Cloudflare for SaaS --------------------------------------------------------------------
def test_cloudflare_creates_the_custom_hostname_and_it_is_active(
    env: Resources, zone: TestZone, cloudflare: FakeCloudflare
) -> None:
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))
    drive(env)
    final = record()
    assert (final.status, final.provider, final.checks) == ("active", "cloudflare", 1)
    assert cloudflare.requests == [
        ("GET", f"/client/v4/zones/{cloudflare.zone_id}/custom_hostnames"),
        ("POST", f"/client/v4/zones/{cloudflare.zone_id}/custom_hostnames"),
    ]
    assert [h["hostname"] for h in cloudflare.hostnames.values()] == [HOST]


def test_cloudflare_pending_then_active(
    env: Resources, zone: TestZone, cloudflare: FakeCloudflare
) -> None:
    cloudflare.statuses = ["pending", "active"]
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))

    deliver(env)
    assert record().status == "pending"
    assert record().last_error == (
        "Cloudflare custom hostname status pending (certificate pending_validation): "
        "custom hostname not yet seen"
    )
    drive(env)

    assert (record().status, record().checks) == ("active", 2)
    methods = [method for method, _ in cloudflare.requests]
    assert methods == ["GET", "POST", "GET", "PATCH"]


def test_cloudflare_5xx_is_retried_then_succeeds(
    env: Resources, zone: TestZone, cloudflare: FakeCloudflare
) -> None:
    cloudflare.fail_next = [503]
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))

    first = deliver(env)
    assert first is not None
    assert len(first["batchItemFailures"]) == 1
    assert (record().status, record().checks) == ("pending", 0)  # a retry, not a check

    drive(env)
    assert (record().status, record().checks) == ("active", 1)


@pytest.fixture
def domain_service(monkeypatch: pytest.MonkeyPatch) -> str:
    """The service the deployed function publishes under (POWERTOOLS_SERVICE_NAME=domain,
    set before its first import; here the metrics object exists already)."""
    monkeypatch.setattr(observability.metrics, "service", "domain")
    return "domain"


def emitted_metrics(printed: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed (log lines are JSON on stdout too)."""
    documents = []
    for line in printed.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def not_configured_count(printed: str) -> int:
    """How many ProviderNotConfigured values were published, each checked for its dimension."""
    count = 0
    for document in emitted_metrics(printed):
        if "ProviderNotConfigured" not in document:
            continue
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "Pixflare"
        assert {"Name": "ProviderNotConfigured", "Unit": "Count"} in directive["Metrics"]
        assert directive["Dimensions"] == [["service"]]
        assert document["service"] == "domain"
        values = document["ProviderNotConfigured"]
        count += int(sum(values) if isinstance(values, list) else values)
    return count


@pytest.mark.parametrize(
    ("refusal", "answer"),
    [("401", "HTTP 401 10500 upstream"), ("403", "HTTP 403 10000 Authentication error")],
)
def test_cloudflare_refusing_the_token_blocks_the_domain_once_without_retries(
    env: Resources,
    zone: TestZone,
    cloudflare: FakeCloudflare,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    domain_service: str,
    refusal: str,
    answer: str,
) -> None:
    # Given a token Cloudflare refuses (401: scripted; 403: a revoked token)
    if refusal == "401":
        cloudflare.fail_next = [401]
    else:
        use_env(monkeypatch, {"CLOUDFLARE_API_TOKEN": "cf-revoked-token-value"})
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))

    # When its check runs, the message is acknowledged: no retry, no DLQ, no re-check
    assert deliver(env) == {"batchItemFailures": []}
    assert deliver(env) is None
    assert receive_all(env.dlq_urls["domain"]) == []
    assert queued_checks(env) == []
    assert len(cloudflare.requests) == 1

    # Then the domain is blocked, saying what the operator has to do, and the alarm's
    # metric was published once
    final = record()
    assert (final.status, final.checks) == ("blocked", 1)
    assert final.last_error == (
        "provider not configured: store the API token in CLOUDFLARE_API_TOKEN "
        f"(pixflare docs/operations.md); Cloudflare refused the token ({answer}); "
        "it needs SSL and Certificates / Custom Hostnames edit on the zone"
    )
    printed = capsys.readouterr()
    assert not_configured_count(printed.out) == 1
    logs = "\n".join(str(entry.__dict__) for entry in caplog.records)
    assert "provider not configured" in logs
    for text in (logs, printed.out, printed.err):
        assert "cf-revoked-token-value" not in text

    # And once a working token is in place, `domain recheck` finishes it
    use_env(monkeypatch, {"CLOUDFLARE_API_TOKEN": cloudflare.token})
    rechecked = run_command(domain_command.run_recheck, hostname=HOST)
    assert (rechecked["status"], rechecked["round"]) == ("pending", 2)
    drive(env)
    after = record()
    assert (after.status, after.provider, after.last_error) == ("active", "cloudflare", None)


def placeholder_secret(cloudflare: FakeCloudflare, monkeypatch: pytest.MonkeyPatch) -> str:
    """The deployed shape: the token only in the secret the stack created, as created."""
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="pixflare/cloudflare", SecretString=TOKEN_PLACEHOLDER
    )["ARN"]
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    use_env(monkeypatch, {"CLOUDFLARE_API_TOKEN_SECRET_ARN": arn})
    return str(arn)


def test_placeholder_secret_blocks_the_domain_until_the_token_is_stored(
    env: Resources,
    zone: TestZone,
    cloudflare: FakeCloudflare,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    domain_service: str,
) -> None:
    # Given a Cloudflare-mode stack whose secret still holds the placeholder
    arn = placeholder_secret(cloudflare, monkeypatch)
    view = admin.add_domain(load_settings(), HOST, OWNER)
    create_records(zone, view)
    other = admin.add_domain(load_settings(), "img.example.test", OWNER)
    create_records(zone, other)

    # When the checks run: one batch, both acknowledged, nothing re-queued or dead-lettered
    assert deliver(env) == {"batchItemFailures": []}
    assert deliver(env) is None
    assert receive_all(env.dlq_urls["domain"]) == []

    # Then each domain is blocked once, Cloudflare was never called with the placeholder,
    # and the metric was published for each
    for hostname in (HOST, "img.example.test"):
        blocked = record(hostname)
        assert (blocked.status, blocked.checks) == ("blocked", 1)
        assert blocked.last_error == (
            f"provider not configured: store the API token in secret {arn} "
            "(pixflare docs/operations.md); "
            "the secret still holds the placeholder the stack created it with"
        )
    assert cloudflare.requests == []
    printed = capsys.readouterr()
    assert not_configured_count(printed.out) == 2
    assert TOKEN_PLACEHOLDER not in printed.out + printed.err

    # When the operator stores the token (the one command of the README) and rechecks
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=arn, SecretString=cloudflare.token
    )
    run_command(domain_command.run_recheck, hostname=HOST)
    drive(env)

    # Then the domain proceeds to active; no new ProviderNotConfigured
    assert (record().status, record().round, record().last_error) == ("active", 2, None)
    assert set(cloudflare.authorizations) == {f"Bearer {cloudflare.token}"}
    assert not_configured_count(capsys.readouterr().out) == 0
    # the other domain waits, blocked, for its own recheck
    assert record("img.example.test").status == "blocked"


@pytest.mark.parametrize(
    ("stored", "cause"),
    [
        (None, "the secret has no value"),
        ("  ", "the secret holds no token"),
        (json.dumps({"token": ""}), "the secret holds no token"),
        (json.dumps({"token": TOKEN_PLACEHOLDER}), "the secret still holds the placeholder"),
    ],
)
def test_a_secret_without_a_usable_token_is_not_configured(
    env: Resources,
    zone: TestZone,
    cloudflare: FakeCloudflare,
    monkeypatch: pytest.MonkeyPatch,
    stored: str | None,
    cause: str,
) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    request: dict[str, Any] = {"Name": "pixflare/cloudflare"}
    if stored is not None:
        request["SecretString"] = stored
    arn = client.create_secret(**request)["ARN"]
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    use_env(monkeypatch, {"CLOUDFLARE_API_TOKEN_SECRET_ARN": arn})
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))

    assert deliver(env) == {"batchItemFailures": []}
    assert deliver(env) is None
    final = record()
    assert final.status == "blocked"
    assert final.last_error is not None
    assert final.last_error.startswith(
        f"provider not configured: store the API token in secret {arn} "
        "(pixflare docs/operations.md); "
    )
    assert cause in final.last_error
    assert cloudflare.requests == []


def test_unreadable_secret_is_still_retried_not_blocked(
    env: Resources, zone: TestZone, cloudflare: FakeCloudflare, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A throttled (or denied) read of the secret says nothing about the token: retried
    arn = placeholder_secret(cloudflare, monkeypatch)
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=arn, SecretString=cloudflare.token
    )
    calls = {"left": 1}

    def throttle_once(**_: Any) -> None:
        if calls["left"]:
            calls["left"] -= 1
            raise EndpointConnectionError(endpoint_url="https://secretsmanager.test")

    aws.secretsmanager().meta.events.register(
        "before-call.secretsmanager.GetSecretValue", throttle_once
    )
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))
    first = deliver(env)
    assert first is not None
    assert len(first["batchItemFailures"]) == 1
    assert record().status == "pending"
    drive(env)
    assert record().status == "active"


def test_cloudflare_blocked_hostname_is_recorded_as_blocked(
    env: Resources, zone: TestZone, cloudflare: FakeCloudflare
) -> None:
    cloudflare.statuses = ["blocked"]
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))
    # A refusal is permanent: the record is acknowledged, not retried, not dead-lettered
    assert deliver(env) == {"batchItemFailures": []}
    assert deliver(env) is None
    assert receive_all(env.dlq_urls["domain"]) == []
    final = record()
    assert final.status == "blocked"
    assert final.last_error is not None
    assert "status blocked" in final.last_error
    assert queued_checks(env) == []


def test_cloudflare_token_from_secrets_manager(
    env: Resources, zone: TestZone, cloudflare: FakeCloudflare, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="pixflare/cloudflare", SecretString=json.dumps({"token": cloudflare.token})
    )["ARN"]
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    use_env(monkeypatch, {"CLOUDFLARE_API_TOKEN_SECRET_ARN": arn})
    create_records(zone, admin.add_domain(load_settings(), HOST, OWNER))
    drive(env)
    assert record().status == "active"
    assert set(cloudflare.authorizations) == {f"Bearer {cloudflare.token}"}
