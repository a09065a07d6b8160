"""A backup destination must not reach inside the function's own network (issue #17).

Refused classes reached through a real DNS server on loopback; the client pinned to
the address that was checked (no second lookup, even when the answer changes); DNS
rebinding between `backup set` and the backup; redirects to loopback not followed;
the operator's opt-in on and off. Hosts that count as public are answered by the
test's resolver, and the client's socket opener is replaced by a RecordingConnector,
which records the address and connects to a server on 127.0.0.1 instead: no test
opens a connection outside loopback.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from pydantic import SecretStr

from lambdas.backup import handler as backup_handler
from lambdas.backup import remote
from lambdas.backup.pipeline import DESTINATION_REFUSED_METRIC
from lambdas.cron.registry import run_to_completion
from lambdas.shared.clock import utcnow
from lambdas.shared.config import load_settings
from lambdas.shared.destinations import Destination, DestinationCredentials, DestinationRepository
from lambdas.shared.endpoint_policy import EndpointPolicy, EndpointRefusedError
from lambdas.shared.errors import PixflareError, aws_errors
from lambdas.shared.images import ImageRecord, ImageRepository
from lambdas.shared.observability import metrics
from lambdas.shared.originals import store_upload
from pixflare.operations.backup_destinations import DestinationRequest, configure_destination
from tests.support.aws_resources import Resources, receive_all
from tests.support.dns_server import LoopbackDnsServer, TestZone
from tests.support.env import ALLOW_PRIVATE_ENDPOINTS, use_env
from tests.support.events import FakeLambdaContext, event_from_received
from tests.support.network import (
    LOOPBACK,
    PUBLIC_V4,
    PUBLIC_V4_B,
    PUBLIC_V6,
    RecordingConnector,
    StaticResolver,
    TlsProxy,
    ZoneResolver,
    redirecting,
    self_signed,
)
from tests.support.s3_target import S3Target

HOST = "backups.example.test"
PUBLIC_ONLY = "backups go to public S3-compatible services only"


@pytest.fixture(scope="module")
def target() -> Iterator[S3Target]:
    # Requests reach it with a name in the Host header (the pinned client keeps it):
    # moto would read the name's first label as a virtual-hosted bucket.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
        server = S3Target(bucket="policy-backups", auth=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zone() -> TestZone:
    return TestZone("example.test")


@pytest.fixture
def dns(zone: TestZone) -> Iterator[ZoneResolver]:
    with LoopbackDnsServer(zone) as server:
        yield ZoneResolver(server.port)


@pytest.fixture
def connector(monkeypatch: pytest.MonkeyPatch) -> RecordingConnector:
    """Every socket the backup client opens goes through this (none by default)."""
    recording = RecordingConnector()
    monkeypatch.setattr(remote, "open_socket", recording)
    return recording


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    """The deployed default: the opt-in is off."""
    use_env(monkeypatch, aws.env("backup"))
    return aws


def credentials(target: S3Target) -> DestinationCredentials:
    return DestinationCredentials(target.access_key_id, SecretStr(target.secret_access_key))


def destination(target: S3Target, endpoint: str, *, path_style: bool = True) -> Destination:
    return Destination(
        owner="eve", bucket=target.bucket, endpoint_url=endpoint, path_style=path_style
    )


def request(target: S3Target, owner: str, endpoint: str) -> DestinationRequest:
    return DestinationRequest(
        owner=owner,
        bucket=target.bucket,
        endpoint_url=endpoint,
        prefix="pol",
        path_style=True,
        credentials=credentials(target),
    )


def use_policy(monkeypatch: pytest.MonkeyPatch, policy: EndpointPolicy) -> None:
    """The policy every caller derives from the settings, for this test."""
    monkeypatch.setattr(EndpointPolicy, "from_settings", classmethod(lambda cls, _s: policy))


def jpeg(size: int, seed: int = 1) -> bytes:
    return b"\xff\xd8\xff\xe0" + random.Random(seed).randbytes(size - 4)


def record(env: Resources, image_id: str) -> ImageRecord:
    found = ImageRepository(env.tables["images"]).get(image_id)
    assert found is not None
    return found


def run_backup_queue(env: Resources) -> list[dict[str, Any]]:
    messages = receive_all(env.queue_urls["backup"])
    assert messages, "a backup job was queued"
    response = backup_handler.handler(
        event_from_received(messages, env.queue_arns["backup"]), FakeLambdaContext(60_000)
    )
    return list(response["batchItemFailures"])


# -- names, through a DNS server on loopback ------------------------------------------------


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([("A", "127.0.0.1")], "a loopback address (127.0.0.1)"),
        ([("AAAA", "::1")], "a loopback address (::1)"),
        ([("A", "10.0.0.5")], "a private address (10.0.0.5)"),
        ([("AAAA", "fd12::5")], "a private address (fd12::5)"),
        ([("A", "169.254.169.254")], "the cloud instance metadata address (169.254.169.254)"),
        ([("AAAA", "fd00:ec2::254")], "the cloud instance metadata address (fd00:ec2::254)"),
        ([("A", "169.254.1.1")], "a link-local address (169.254.1.1)"),
        ([("A", "100.64.1.1")], "a carrier-grade NAT address (100.64.1.1)"),
        ([("A", "0.0.0.0")], "an unspecified address (0.0.0.0)"),
        ([("AAAA", "::ffff:7f00:1")], "a loopback address (::ffff:7f00:1, which carries"),
        ([("AAAA", "64:ff9b::a00:5")], "a private address (64:ff9b::a00:5, which carries"),
        # one public and one refused address
        ([("A", PUBLIC_V4), ("A", "10.0.0.5")], "a private address (10.0.0.5)"),
        ([("A", PUBLIC_V4), ("AAAA", "::1")], "a loopback address (::1)"),
        ([("AAAA", PUBLIC_V6), ("A", "127.0.0.1")], "a loopback address (127.0.0.1)"),
    ],
)
def test_a_name_resolving_to_a_refused_address_gets_no_client_and_no_connection(
    zone: TestZone,
    dns: ZoneResolver,
    connector: RecordingConnector,
    target: S3Target,
    records: list[tuple[str, str]],
    expected: str,
) -> None:
    by_type: dict[str, list[str]] = {}
    for rtype, value in records:
        by_type.setdefault(rtype, []).append(value)
    for rtype, values in by_type.items():
        zone.set(HOST, rtype, *values)
    policy = EndpointPolicy(resolver=dns)

    with pytest.raises(EndpointRefusedError) as refused:
        remote.remote_client(destination(target, f"https://{HOST}"), credentials(target), policy)

    assert refused.value.reason.startswith(f"the endpoint resolves to {expected}")
    assert refused.value.reason.endswith(PUBLIC_ONLY)
    assert connector.attempts == []


def test_a_cname_into_a_private_address_is_refused(zone: TestZone, dns: ZoneResolver) -> None:
    zone.set(HOST, "CNAME", "inside.example.test")
    zone.set("inside.example.test", "A", "192.168.7.7")
    with pytest.raises(EndpointRefusedError, match=r"private address \(192\.168\.7\.7\)"):
        EndpointPolicy(resolver=dns).check_url(f"https://{HOST}")


# -- pinning --------------------------------------------------------------------------------


def test_the_client_connects_only_to_the_checked_address_and_never_looks_again(
    zone: TestZone, dns: ZoneResolver, connector: RecordingConnector, target: S3Target
) -> None:
    # Given a name that resolves to a public address (the test's DNS says so), reached
    # (by the recording transport) at the S3 target on loopback
    zone.set(HOST, "A", PUBLIC_V4)
    connector.routes[PUBLIC_V4] = target.port
    policy = EndpointPolicy(allow_http=True, resolver=dns)  # the target speaks plain HTTP
    client = remote.remote_client(
        destination(target, f"http://{HOST}:{target.port}"), credentials(target), policy
    )
    client.put_object(Bucket=target.bucket, Key="pinned/a", Body=b"first")

    # When the name's answer changes to loopback, and the client opens a new connection
    zone.set(HOST, "A", "127.0.0.1")
    client.current()._endpoint.http_session.close()  # type: ignore[attr-defined]
    body = client.get_object(Bucket=target.bucket, Key="pinned/a")["Body"].read()

    # Then it still reached the address that was checked, and looked the name up once
    assert body == b"first"
    assert len(connector.attempts) >= 2
    assert connector.addresses == {PUBLIC_V4}
    assert dns.lookups == [HOST]
    # and the Host header stayed the name: the target checks the SigV4 signature over it
    assert target.read("pinned/a")[0] == b"first"


def test_https_with_the_default_policy_keeps_the_name_for_sni_and_the_certificate(
    connector: RecordingConnector,
    target: S3Target,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Given the deployed policy (https, public addresses only), a name the resolver says
    # is public, and TLS for that name (a certificate the client trusts) on loopback
    resolver = StaticResolver({HOST: [PUBLIC_V4], "other.example.test": [PUBLIC_V4_B]})
    policy = EndpointPolicy(resolver=resolver)
    cert, key = self_signed(HOST, str(tmp_path))
    monkeypatch.setenv("AWS_CA_BUNDLE", cert)
    with TlsProxy(target.port, cert, key) as tls:
        connector.routes.update({PUBLIC_V4: tls.port, PUBLIC_V4_B: tls.port})
        client = remote.remote_client(
            destination(target, f"https://{HOST}:{tls.port}"), credentials(target), policy
        )

        # When the client writes and reads
        client.put_object(Bucket=target.bucket, Key="tls/a", Body=b"over tls")
        body = client.get_object(Bucket=target.bucket, Key="tls/a")["Body"].read()

        # Then it went to the checked address, with the name as SNI, and verified the
        # certificate against the name (not the address it connected to)
        assert body == b"over tls"
        assert connector.addresses == {PUBLIC_V4}
        assert set(tls.server_names) == {HOST}

        # And a name the certificate does not cover fails the handshake: the
        # certificate check is still on, though the socket goes to an IP
        other = remote.remote_client(
            destination(target, f"https://other.example.test:{tls.port}"),
            credentials(target),
            policy,
        )
        with pytest.raises(PixflareError, match=r"certificate|SSL"), aws_errors("put"):
            other.put_object(Bucket=target.bucket, Key="tls/b", Body=b"x")
        assert "other.example.test" in tls.server_names


def test_a_host_met_after_the_check_is_checked_before_its_first_connection(
    zone: TestZone, dns: ZoneResolver, connector: RecordingConnector, target: S3Target
) -> None:
    # Given a client that sends to hosts other than the one checked up front: with
    # virtual-hosted addressing, {bucket}.{host} (remote_client itself keeps custom
    # endpoints path-style, so this only ever guards what botocore might do later)
    zone.set(HOST, "A", PUBLIC_V4)
    zone.set(f"{target.bucket}.{HOST}", "A", "127.0.0.1")
    policy = EndpointPolicy(allow_http=True, resolver=dns)
    pins = remote.Pins(policy, connector)
    pins.pin(policy.check_url(f"http://{HOST}:{target.port}"))
    client = remote.pin_client(
        boto3.client(
            "s3",
            endpoint_url=f"http://{HOST}:{target.port}",
            region_name="us-east-1",
            aws_access_key_id=target.access_key_id,
            aws_secret_access_key=target.secret_access_key,
            aws_session_token=None,
            config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 0}),
        ),
        pins,
        remote.REMOTE_TIMEOUTS[0],
    )

    # Then that host is looked up and checked before its first connection, and refused
    with (
        pytest.raises(EndpointRefusedError, match=r"loopback address \(127\.0\.0\.1\)"),
        aws_errors("put"),
    ):
        client.put_object(Bucket=target.bucket, Key="v/a", Body=b"x")
    assert connector.attempts == []
    assert dns.lookups == [HOST, f"{target.bucket}.{HOST}"]
    # for good: a second try is refused without asking DNS again
    with pytest.raises(EndpointRefusedError), aws_errors("put"):
        client.put_object(Bucket=target.bucket, Key="v/a", Body=b"x")
    assert dns.lookups == [HOST, f"{target.bucket}.{HOST}"]


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_loopback_is_not_followed(
    connector: RecordingConnector, target: S3Target, status: int
) -> None:
    # Given a public-looking host whose server answers every request with a redirect to
    # a service on loopback (the opt-in is off for addresses: loopback is refused)
    resolver = StaticResolver({HOST: [PUBLIC_V4]})
    policy = EndpointPolicy(allow_http=True, resolver=resolver)
    with (
        redirecting(404, "unused") as inside,
        redirecting(status, f"http://{LOOPBACK}:{inside.port}/stolen") as outside,
    ):
        connector.routes[PUBLIC_V4] = outside.port
        client = remote.remote_client(
            destination(target, f"http://{HOST}:{outside.port}"), credentials(target), policy
        )

        # When the client writes and reads there
        for call in (
            lambda: client.put_object(Bucket=target.bucket, Key="r/a", Body=b"secret bytes"),
            lambda: client.get_object(Bucket=target.bucket, Key="r/a"),
            lambda: client.head_object(Bucket=target.bucket, Key="r/a"),
        ):
            with pytest.raises(PixflareError), aws_errors("call"):
                call()

        # Then the redirects came back as failures, each call asking at most twice (the
        # call, and the HeadBucket of botocore's region lookup: never again and again);
        # nothing reached the loopback service
        assert 3 <= len(outside.hits) <= 2 * 3
        assert inside.hits == []
        assert connector.addresses == {PUBLIC_V4}
        assert {hit.host for hit in outside.hits} == {f"{HOST}:{outside.port}"}


def test_botocores_region_redirect_stays_on_the_configured_host(
    connector: RecordingConnector, target: S3Target
) -> None:
    # Given a server that claims the bucket lives in another region (S3's 301 with
    # x-amz-bucket-region, which botocore follows by re-resolving the endpoint)
    resolver = StaticResolver({HOST: [PUBLIC_V4]})
    policy = EndpointPolicy(allow_http=True, resolver=resolver)
    with (
        redirecting(404, "unused") as inside,
        redirecting(
            301, f"http://{LOOPBACK}:{inside.port}/", {"x-amz-bucket-region": "eu-west-1"}
        ) as outside,
    ):
        connector.routes[PUBLIC_V4] = outside.port
        client = remote.remote_client(
            destination(target, f"http://{HOST}:{outside.port}"), credentials(target), policy
        )
        with pytest.raises(PixflareError), aws_errors("head"):
            client.head_object(Bucket=target.bucket, Key="r/a")

        # Then it asked again, at the same host, and never at the Location
        assert len(outside.hits) == 2
        assert {hit.host for hit in outside.hits} == {f"{HOST}:{outside.port}"}
        assert inside.hits == []
        assert connector.addresses == {PUBLIC_V4}


# -- backup set: with the opt-in off, the loopback targets are refused with the reason ------


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://127.0.0.1:{port}", "the endpoint uses plain http://; backups go to https://"),
        (
            "https://127.0.0.1:{port}",
            f"the endpoint is a loopback address (127.0.0.1); {PUBLIC_ONLY}",
        ),
        ("https://2130706433:{port}", "the endpoint is a loopback address (127.0.0.1)"),
        ("https://0177.0.0.1:{port}", "the endpoint is a loopback address (127.0.0.1)"),
        ("https://[::ffff:127.0.0.1]:{port}", "the endpoint is a loopback address"),
        ("https://169.254.169.254", "the endpoint is the cloud instance metadata address"),
        ("https://[fd00:ec2::254]", "the endpoint is the cloud instance metadata address"),
        ("https://10.0.0.5", f"the endpoint is a private address (10.0.0.5); {PUBLIC_ONLY}"),
        ("https://localhost:{port}", "the endpoint resolves to a loopback address"),
    ],
)
@pytest.mark.parametrize("check", [True, False])
def test_set_refuses_saves_nothing_and_sends_nothing(
    env: Resources,
    target: S3Target,
    connector: RecordingConnector,
    endpoint: str,
    reason: str,
    check: bool,
) -> None:
    url = endpoint.format(port=target.port)
    with pytest.raises(EndpointRefusedError) as refused:
        configure_destination(load_settings(), request(target, "eve", url), check=check)
    assert refused.value.reason.startswith(reason)
    assert DestinationRepository(env.tables["destinations"]).get("eve") is None
    assert connector.attempts == []
    assert not [key for key in target.objects() if key.startswith("pol/eve/")]


def test_the_same_loopback_target_is_accepted_with_the_opt_in(
    env: Resources, target: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, ALLOW_PRIVATE_ENDPOINTS)
    saved = configure_destination(load_settings(), request(target, "eve", target.endpoint))
    assert saved.endpoint_url == target.endpoint


# -- at use: the backup function and the daily sync ------------------------------------------


def test_a_destination_saved_before_the_policy_is_refused_at_use_for_good(
    env: Resources,
    target: S3Target,
    monkeypatch: pytest.MonkeyPatch,
    connector: RecordingConnector,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a loopback destination saved while the opt-in was on (or before this check)
    use_env(monkeypatch, ALLOW_PRIVATE_ENDPOINTS)
    configure_destination(load_settings(), request(target, "eve", target.endpoint), check=False)
    monkeypatch.delenv("BACKUP_ALLOW_PRIVATE_ENDPOINTS")
    use_env(monkeypatch, {})
    upload = store_upload(load_settings(), jpeg(2000), owner="eve", album="a", filename="e.jpg")
    capsys.readouterr()

    # When the backup job runs with the opt-in off
    failures = run_backup_queue(env)

    # Then it is not retried, the record says failed and why, and nothing was sent
    assert failures == []
    assert receive_all(env.dlq_urls["backup"]) == []
    failed = record(env, upload.record.image_id)
    assert failed.backup_status == "failed"
    assert failed.backup["last_error"] == (
        "EndpointRefusedError: the endpoint uses plain http://; backups go to https:// "
        "endpoints only"
    )
    assert connector.attempts == []
    assert not [key for key in target.objects() if key.startswith("pol/eve/")]
    # and the refusal was counted
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert any(DESTINATION_REFUSED_METRIC in doc for doc in emitted), emitted


def test_dns_rebinding_between_set_and_backup_is_refused(
    env: Resources,
    target: S3Target,
    zone: TestZone,
    dns: ZoneResolver,
    connector: RecordingConnector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a name that resolves to a public address when the owner sets it (the target
    # speaks plain HTTP, so this policy allows http; addresses are checked as deployed)
    zone.set(HOST, "A", PUBLIC_V4)
    connector.routes[PUBLIC_V4] = target.port
    use_policy(monkeypatch, EndpointPolicy(allow_http=True, resolver=dns))
    endpoint = f"http://{HOST}:{target.port}"
    configure_destination(load_settings(), request(target, "mallory", endpoint))
    assert connector.addresses == {PUBLIC_V4}  # the test write, read and delete went there
    upload = store_upload(load_settings(), jpeg(3000), owner="mallory", album="a", filename="m.jpg")

    # When the name is pointed at loopback before the backup runs
    zone.set(HOST, "A", "127.0.0.1")
    connector.attempts.clear()
    failures = run_backup_queue(env)

    # Then the backup refuses, for good, with the reason, and connects nowhere
    assert failures == []
    failed = record(env, upload.record.image_id)
    assert failed.backup_status == "failed"
    assert "the endpoint resolves to a loopback address (127.0.0.1)" in failed.backup["last_error"]
    assert connector.attempts == []
    assert "pol/mallory/a/m.jpg" not in target.objects()

    # And the daily sync refuses the destination too: nothing queued, the refusal counted
    metrics.clear_metrics()
    report = run_to_completion("backup-sync", load_settings(), utcnow())
    assert report.counts.get("refused") == 1
    assert report.counts.get("queued", 0) == 0
    assert receive_all(env.queue_urls["backup"]) == []
    assert DESTINATION_REFUSED_METRIC in metrics.metric_set
    metrics.clear_metrics()
    assert connector.attempts == []

    # And once the name is public again, the sync queues the image and it is backed up
    zone.set(HOST, "A", PUBLIC_V4)
    report = run_to_completion("backup-sync", load_settings(), utcnow())
    assert report.counts.get("queued") == 1
    assert run_backup_queue(env) == []
    assert record(env, upload.record.image_id).backup_status == "synced"
    assert connector.addresses == {PUBLIC_V4}
