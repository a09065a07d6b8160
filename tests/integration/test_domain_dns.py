"""The DNS check against a real DNS server on loopback whose zone changes under it."""

from __future__ import annotations

from collections.abc import Iterator

import dns.resolver
import pytest

from lambdas.domain.dns_check import DnsChecker
from lambdas.shared.deadline import Deadline
from lambdas.shared.errors import ConfigError
from tests.support.dns_server import BlackHoleDnsServer, LoopbackDnsServer, TestZone

HOST = "cdn.example.test"
TARGET = "fallback.pixflare.test"
TOKEN = "tok-0123456789abcdefghij"
VERIFY = f"_pixflare-verify.{HOST}"
TARGET_V4 = "192.0.2.10"
TARGET_V6 = "2001:db8::10"
BUDGET = 5.0


@pytest.fixture
def zone() -> TestZone:
    zone = TestZone("example.test", "pixflare.test")
    zone.set(TARGET, "A", TARGET_V4)
    zone.set(TARGET, "AAAA", TARGET_V6)
    return zone


@pytest.fixture
def server(zone: TestZone) -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer(zone) as server:
        yield server


@pytest.fixture
def checker(server: LoopbackDnsServer) -> DnsChecker:
    return DnsChecker([server.nameserver], query_timeout=1.0)


def check(checker: DnsChecker, token: str = TOKEN) -> tuple[bool, str | None]:
    result = checker.check(HOST, token=token, target=TARGET, deadline=Deadline.in_seconds(BUDGET))
    return result.ok, result.reason


def test_records_absent_then_added_passes(zone: TestZone, checker: DnsChecker) -> None:
    # Given nothing created yet
    ok, reason = check(checker)
    assert not ok
    assert reason is not None
    assert f"{HOST} does not exist yet (NXDOMAIN)" in reason
    assert f"no TXT record at {VERIFY}" in reason

    # When the user creates the CNAME only
    zone.set(HOST, "CNAME", TARGET + ".")
    ok, reason = check(checker)
    assert not ok
    assert reason == f"no TXT record at {VERIFY} yet (NXDOMAIN)"

    # Then with the TXT too (case and trailing dot of the target do not matter)
    zone.set(HOST, "CNAME", "Fallback.PIXFLARE.test.")
    zone.set(VERIFY, "TXT", "some-other-verification", TOKEN)
    assert check(checker) == (True, None)


def test_wrong_cname_target_is_not_yet(zone: TestZone, checker: DnsChecker) -> None:
    zone.set(HOST, "CNAME", "elsewhere.example.net")
    zone.set(VERIFY, "TXT", TOKEN)
    ok, reason = check(checker)
    assert not ok
    assert reason == f"CNAME {HOST} points to elsewhere.example.net, expected {TARGET}"


def test_wrong_token_is_not_yet(zone: TestZone, checker: DnsChecker) -> None:
    zone.set(HOST, "CNAME", TARGET)
    zone.set(VERIFY, "TXT", TOKEN + "x", TOKEN[:-1])
    ok, reason = check(checker)
    assert not ok
    assert reason == f"TXT {VERIFY} has 2 value(s), none equal to the token"


# Tokens are secrets.token_urlsafe: mixed case, and case is part of the token.
MIXED_TOKEN = "4oT1f1m1nB7o0f6K1qkqS8g6mVq9D3sY"


@pytest.mark.parametrize(
    "published",
    [
        MIXED_TOKEN.swapcase(),
        MIXED_TOKEN.lower(),
        MIXED_TOKEN.upper(),
        MIXED_TOKEN[0] + MIXED_TOKEN[1].upper() + MIXED_TOKEN[2:],  # one letter's case
        f'"{MIXED_TOKEN}"',
        f" {MIXED_TOKEN} ",
    ],
    ids=["swapcase", "lower", "upper", "one-letter", "quoted", "spaces"],
)
def test_token_must_match_exactly(zone: TestZone, checker: DnsChecker, published: str) -> None:
    # Given the CNAME right and the TXT holding the token changed (case, quotes, spaces)
    assert published != MIXED_TOKEN
    zone.set(HOST, "CNAME", TARGET)
    zone.set(VERIFY, "TXT", published)
    ok, reason = check(checker, MIXED_TOKEN)
    assert not ok
    assert reason == f"TXT {VERIFY} has 1 value(s), none equal to the token"
    # while the token itself, as given, passes
    zone.set(VERIFY, "TXT", published, MIXED_TOKEN)
    assert check(checker, MIXED_TOKEN) == (True, None)


def test_flattened_addresses_of_the_target_pass(zone: TestZone, checker: DnsChecker) -> None:
    # A provider that flattens CNAMEs at the apex-like level serves the target's addresses
    zone.set(HOST, "A", TARGET_V4)
    zone.set(HOST, "AAAA", TARGET_V6)
    zone.set(VERIFY, "TXT", TOKEN)
    result = checker.check(HOST, token=TOKEN, target=TARGET, deadline=Deadline.in_seconds(BUDGET))
    assert result.ok
    assert result.flattened


def test_foreign_addresses_do_not_pass(zone: TestZone, checker: DnsChecker) -> None:
    zone.set(HOST, "A", TARGET_V4, "198.51.100.7")
    zone.set(VERIFY, "TXT", TOKEN)
    ok, reason = check(checker)
    assert not ok
    assert (
        reason
        == f"{HOST} has no CNAME and its addresses (192.0.2.10, 198.51.100.7) are not {TARGET}'s"
    )


def test_existing_name_without_records_is_no_answer(zone: TestZone, checker: DnsChecker) -> None:
    # The hostname exists (it has a TXT record below it) but has no CNAME or address
    zone.set(VERIFY, "TXT", TOKEN)
    ok, reason = check(checker)
    assert not ok
    assert reason == f"no CNAME (or A/AAAA) record for {HOST} yet"


def test_servfail_is_not_yet_with_reason(zone: TestZone, checker: DnsChecker) -> None:
    zone.set(HOST, "CNAME", TARGET)
    zone.set(VERIFY, "TXT", TOKEN)
    zone.servfail(VERIFY)
    ok, reason = check(checker)
    assert not ok
    assert reason is not None
    assert reason.startswith(f"TXT {VERIFY}: SERVFAIL from 127.0.0.1:")


def test_large_answer_is_fetched_over_tcp(zone: TestZone, checker: DnsChecker) -> None:
    # Given more TXT data than fits a 512-byte UDP answer
    zone.set(HOST, "CNAME", TARGET)
    zone.set(VERIFY, "TXT", *[f"other-{i}-" + "x" * 120 for i in range(8)], TOKEN)
    # Then the truncated answer is asked again over TCP and the token is found
    assert check(checker) == (True, None)
    assert (VERIFY, "TXT", "tcp") in zone.queries


def test_server_that_never_answers_times_out(zone: TestZone) -> None:
    with BlackHoleDnsServer() as silent:
        checker = DnsChecker([silent.nameserver], query_timeout=0.2)
        result = checker.check(HOST, token=TOKEN, target=TARGET, deadline=Deadline.in_seconds(1.0))
    assert not result.ok
    assert result.reason is not None
    assert f"CNAME {HOST}: timed out asking {silent.nameserver}" in result.reason
    assert silent.received >= 1


def test_silent_server_is_skipped_for_a_live_one(zone: TestZone, server: LoopbackDnsServer) -> None:
    zone.set(HOST, "CNAME", TARGET)
    zone.set(VERIFY, "TXT", TOKEN)
    with BlackHoleDnsServer() as silent:
        checker = DnsChecker([silent.nameserver, server.nameserver], query_timeout=0.2)
        result = checker.check(
            HOST, token=TOKEN, target=TARGET, deadline=Deadline.in_seconds(BUDGET)
        )
    assert result.ok
    # The silent one was asked once, then moved to the back of the list
    assert silent.received == 1


def test_budget_spent_means_not_yet(zone: TestZone) -> None:
    with BlackHoleDnsServer() as silent:
        checker = DnsChecker([silent.nameserver], query_timeout=0.2)
        result = checker.check(HOST, token=TOKEN, target=TARGET, deadline=Deadline.in_seconds(0.0))
    assert not result.ok
    assert result.reason is not None
    assert "out of time" in result.reason
    assert silent.received == 0


def test_authoritative_servers_are_found_by_walking_up(
    zone: TestZone, server: LoopbackDnsServer
) -> None:
    # Given no configured nameservers: the zone's NS (ns1.example.test -> 127.0.0.1)
    # is found through a recursive resolver (here the same loopback server)
    zone.add_delegation("example.test", "ns1.example.test", "127.0.0.1")
    zone.set(HOST, "CNAME", TARGET)
    zone.set(VERIFY, "TXT", TOKEN)
    bootstrap = dns.resolver.Resolver(configure=False)
    bootstrap.nameservers = ["127.0.0.1"]
    bootstrap.port = server.port
    checker = DnsChecker(bootstrap=bootstrap, authoritative_port=server.port, query_timeout=1.0)

    result = checker.check(HOST, token=TOKEN, target=TARGET, deadline=Deadline.in_seconds(BUDGET))

    assert result.ok
    asked = [(name, rtype) for name, rtype, _ in zone.queries]
    assert ("example.test", "NS") in asked
    assert ("ns1.example.test", "A") in asked


def test_zone_without_nameserver_addresses_is_not_yet(
    zone: TestZone, server: LoopbackDnsServer
) -> None:
    zone.set("example.test", "NS", "ns1.nowhere.example.test")
    bootstrap = dns.resolver.Resolver(configure=False)
    bootstrap.nameservers = ["127.0.0.1"]
    bootstrap.port = server.port
    checker = DnsChecker(bootstrap=bootstrap, authoritative_port=server.port, query_timeout=1.0)
    result = checker.check(HOST, token=TOKEN, target=TARGET, deadline=Deadline.in_seconds(BUDGET))
    assert not result.ok
    assert result.reason == "the nameservers of example.test have no addresses"


@pytest.mark.parametrize("spec", ["127.0.0.1:notaport", "127.0.0.1:0", ":53"])
def test_bad_nameserver_setting_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="PIXFLARE_DNS_NAMESERVERS"):
        DnsChecker([spec])
