"""The backup endpoint policy: every refused class, literal and resolved, and the opt-in.

Pure: names are answered by an injected resolver; nothing is looked up or connected.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from lambdas.shared.config import settings_from_env
from lambdas.shared.endpoint_policy import (
    EndpointPolicy,
    EndpointRefusedError,
    EndpointUnresolvedError,
    classify,
    parse_address,
    parse_endpoint,
)
from tests.support.network import PUBLIC_V4, PUBLIC_V4_B, PUBLIC_V6, StaticResolver

STRICT = EndpointPolicy()
ALLOWED = EndpointPolicy(allow_private=True, allow_http=True)

# (address, what the reason calls it)
REFUSED: list[tuple[str, str]] = [
    ("127.0.0.1", "a loopback address"),
    ("127.9.9.9", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.5", "a private address"),
    ("172.16.3.4", "a private address"),
    ("192.168.1.10", "a private address"),
    ("fd12:3456::1", "a private address"),  # unique local
    ("fec0::1", "a private address"),  # site-local
    ("169.254.10.10", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("100.64.0.1", "a carrier-grade NAT address"),
    ("100.127.255.254", "a carrier-grade NAT address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"),
    ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "a reserved address"),
    ("169.254.169.254", "the cloud instance metadata address"),
    ("169.254.170.2", "the cloud instance metadata address"),
    ("fd00:ec2::254", "the cloud instance metadata address"),
    ("192.0.2.10", "a special-purpose (non-public) address"),  # documentation
    ("198.18.0.1", "a special-purpose (non-public) address"),  # benchmarking
    # IPv4 inside IPv6: unwrapped and judged as the IPv4 address
    ("::ffff:127.0.0.1", "a loopback address"),
    ("::ffff:10.0.0.5", "a private address"),
    ("::ffff:169.254.169.254", "the cloud instance metadata address"),
    ("64:ff9b::7f00:1", "a loopback address"),  # NAT64 well-known prefix
    ("64:ff9b::a9fe:a9fe", "the cloud instance metadata address"),
    ("64:ff9b:1::a00:5", "a private address"),  # local-use NAT64
    ("2002:7f00:1::1", "a loopback address"),  # 6to4 of 127.0.0.1
    ("::127.0.0.1", "a reserved address"),  # IPv4-compatible (deprecated)
]
PUBLIC = [PUBLIC_V4, PUBLIC_V4_B, PUBLIC_V6, "64:ff9b::808:808", "::ffff:8.8.8.8"]


def bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize(("address", "noun"), REFUSED)
def test_each_refused_literal_is_named_in_one_line(address: str, noun: str) -> None:
    with pytest.raises(EndpointRefusedError) as refused:
        STRICT.check_url(f"https://{bracket(address)}:9000")
    reason = refused.value.reason
    assert reason.startswith(f"the endpoint is {noun} ({ipaddress.ip_address(address)}")
    assert reason.endswith("; backups go to public S3-compatible services only")
    assert "\n" not in reason


@pytest.mark.parametrize(("address", "noun"), REFUSED)
def test_each_refused_class_reached_through_a_name(address: str, noun: str) -> None:
    resolver = StaticResolver({"backups.example.net": [address]})
    policy = EndpointPolicy(resolver=resolver)
    with pytest.raises(EndpointRefusedError, match=re.escape(f"resolves to {noun}")):
        policy.check_url("https://backups.example.net")
    assert resolver.lookups == ["backups.example.net"]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass_and_are_the_ones_returned(address: str) -> None:
    resolver = StaticResolver({"s3.example.net": [address]})
    checked = EndpointPolicy(resolver=resolver).check_url("https://S3.Example.NET.:8443/")
    assert checked.host == "s3.example.net"
    assert checked.port == 8443
    assert [str(a) for a in checked.addresses] == [str(ipaddress.ip_address(address))]


def test_the_issues_example_reason() -> None:
    resolver = StaticResolver({"minio.corp.example": ["10.0.0.5"]})
    with pytest.raises(EndpointRefusedError) as refused:
        EndpointPolicy(resolver=resolver).check_url("https://minio.corp.example")
    assert str(refused.value) == (
        "the endpoint resolves to a private address (10.0.0.5); "
        "backups go to public S3-compatible services only"
    )


@pytest.mark.parametrize(
    "answers",
    [
        [PUBLIC_V4, "10.0.0.5"],
        ["10.0.0.5", PUBLIC_V4],
        [PUBLIC_V4, PUBLIC_V6, "::1"],
        [PUBLIC_V6, "fd00:ec2::254"],
    ],
)
def test_one_refused_address_among_public_ones_refuses_the_name(answers: list[str]) -> None:
    policy = EndpointPolicy(resolver=StaticResolver({"mixed.example.net": answers}))
    with pytest.raises(EndpointRefusedError, match="resolves to"):
        policy.check_url("https://mixed.example.net")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.0.0.1", "127.0.0.1"),  # hex
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short forms
        ("0", "0.0.0.0"),
        ("012.0.0.5", "10.0.0.5"),
        ("167772165", "10.0.0.5"),
        ("2852039166", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ],
)
def test_numeric_spellings_getaddrinfo_accepts_are_caught(host: str, expected: str) -> None:
    import socket

    # getaddrinfo reads them the same way (numeric, no lookup): the policy agrees with it
    assert socket.getaddrinfo(host, 80, flags=socket.AI_NUMERICHOST)[0][4][0] == expected
    assert str(parse_address(host)) == expected
    resolver = StaticResolver()
    with pytest.raises(EndpointRefusedError, match=rf"the endpoint is .*\({expected}\)"):
        EndpointPolicy(resolver=resolver).check_url(f"https://{host}:9000/")
    assert resolver.lookups == []  # a literal is never looked up


@pytest.mark.parametrize("host", ["example.net", "0x7g.1", "1.2.3.4.5", "256.1.1.1x", "deadbeef"])
def test_names_that_look_numeric_are_still_names(host: str) -> None:
    assert parse_address(host) is None


def test_plain_http_is_refused_by_default() -> None:
    policy = EndpointPolicy(resolver=StaticResolver({"s3.example.net": [PUBLIC_V4]}))
    with pytest.raises(EndpointRefusedError, match=r"plain http://; backups go to https://"):
        policy.check_url("http://s3.example.net")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://s3.example.net", "must be an https:// URL"),
        ("https://", "must be an https:// URL"),
        ("s3.example.net:9000", "must be an https:// URL"),
        ("https://user:pw@s3.example.net", "user name or password"),
        ("https://user@s3.example.net", "user name or password"),
        ("https://s3.example.net/#frag", "query or a fragment"),
        ("https://s3.example.net/?x=1", "query or a fragment"),
        ("https://s3.example.net:99999", "not a URL"),
    ],
)
def test_malformed_endpoints_are_refused(url: str, message: str) -> None:
    with pytest.raises(EndpointRefusedError, match=message):
        STRICT.check_url(url)


def test_odd_ports_are_fine() -> None:
    assert parse_endpoint("https://s3.example.net:1") == ("https", "s3.example.net", 1)
    assert parse_endpoint("http://[::1]:65535/") == ("http", "::1", 65535)
    assert parse_endpoint("https://s3.example.net") == ("https", "s3.example.net", 443)


def test_a_name_that_does_not_resolve_is_transient_not_refused() -> None:
    policy = EndpointPolicy(resolver=StaticResolver())
    with pytest.raises(EndpointUnresolvedError):
        policy.check_url("https://gone.example.net")
    empty = EndpointPolicy(resolver=StaticResolver({"empty.example.net": []}))
    with pytest.raises(EndpointUnresolvedError):
        empty.check_url("https://empty.example.net")


def test_a_resolver_answer_that_is_not_an_address_is_refused() -> None:
    policy = EndpointPolicy(resolver=StaticResolver({"odd.example.net": ["not-an-ip"]}))
    with pytest.raises(EndpointRefusedError, match="not an address"):
        policy.check_url("https://odd.example.net")


# -- the operator's opt-in -----------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.0.0.5", "fd12::1", "100.64.0.1", "169.254.10.10"]
)
def test_the_opt_in_allows_private_and_loopback_endpoints(address: str) -> None:
    checked = ALLOWED.check_url(f"http://{bracket(address)}:9000")
    assert [str(a) for a in checked.addresses] == [str(ipaddress.ip_address(address))]


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0", "224.0.0.1"],
)
def test_the_opt_in_still_refuses_metadata_unspecified_multicast(address: str) -> None:
    with pytest.raises(EndpointRefusedError):
        ALLOWED.check_url(f"http://{bracket(address)}")


def test_the_setting_turns_on_both_halves_and_is_off_by_default() -> None:
    off = EndpointPolicy.from_settings(settings_from_env({}))
    assert (off.allow_private, off.allow_http) == (False, False)
    on = EndpointPolicy.from_settings(settings_from_env({"BACKUP_ALLOW_PRIVATE_ENDPOINTS": "true"}))
    assert (on.allow_private, on.allow_http) == (True, True)


def test_classify_unwraps_and_says_what_it_carries() -> None:
    verdict = classify(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert verdict.category == "private"
    assert verdict.shown() == "::ffff:a01:203, which carries 10.1.2.3"
    assert classify(ipaddress.ip_address(PUBLIC_V4)).category is None
