"""The custom-domain hostname rules: examples and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdas.domain.hostnames import (
    MULTI_LABEL_SUFFIXES,
    InvalidHostnameError,
    normalize_hostname,
    own_domains,
    registrable_domain,
    validate_hostname,
)

RESERVED = own_domains("fallback.pixflare.net", ["pixflare.example"])
LDH_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z").filter(
    lambda text: text[2:4] != "--"
)
tld = st.from_regex(r"\A[a-z]{2,6}\Z")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cdn.example.com", "cdn.example.com"),
        ("  CDN.Example.COM.  ", "cdn.example.com"),
        ("img.bücher.de", "img.xn--bcher-kva.de"),
        ("img.xn--bcher-kva.de", "img.xn--bcher-kva.de"),
        ("img。example。com", "img.example.com"),
        ("cdn.example.co.uk", "cdn.example.co.uk"),
        ("a.b.c.example.com.au", "a.b.c.example.com.au"),
        ("pixflare.net.evil.example", "pixflare.net.evil.example"),
    ],
)
def test_accepted(raw: str, expected: str) -> None:
    assert validate_hostname(raw, reserved=RESERVED) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("example.com", "apex"),
        ("example.co.uk", "apex"),
        ("co.uk", "public suffix"),
        ("localhost", "single label"),
        ("*.example.com", "wildcard"),
        ("192.0.2.1", "IP address"),
        ("[2001:db8::1]", "IP address"),
        ("cdn.1.2.3", "all digits"),
        ("-cdn.example.com", "hyphen"),
        ("cdn-.example.com", "hyphen"),
        ("c_dn.example.com", "letters, digits and hyphens"),
        ("ab--cd.example.com", "positions 3-4"),
        ("xn--zz.example.com", "A-label"),
        ("a..example.com", "empty label"),
        ("x" * 64 + ".example.com", "over 63"),
        (".".join(["abcdefghi"] * 26) + ".com", "over the 253 limit"),
        ("img.pixflare.net", "own domain"),
        ("pixflare.net.", "apex"),
        ("deep.img.pixflare.example", "own domain"),
    ],
)
def test_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidHostnameError, match=re.escape(reason)):
        validate_hostname(raw, reserved=RESERVED)


def test_registrable_domain_knows_multi_label_suffixes() -> None:
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert registrable_domain("a.b.example.com") == "example.com"


@given(st.lists(label, min_size=1, max_size=4), label, tld)
def test_valid_subdomains_are_canonical_and_stable(sub: list[str], domain: str, top: str) -> None:
    hostname = ".".join([*sub, domain, top])
    result = validate_hostname(hostname.upper() + ".", reserved=RESERVED)
    assert result == hostname
    # Validating the output changes nothing
    assert validate_hostname(result, reserved=RESERVED) == result


@given(label, st.sampled_from(sorted(MULTI_LABEL_SUFFIXES)))
def test_apex_under_a_multi_label_suffix_is_refused(name: str, suffix: str) -> None:
    with pytest.raises(InvalidHostnameError, match="apex"):
        validate_hostname(f"{name}.{suffix}", reserved=RESERVED)
    assert validate_hostname(f"img.{name}.{suffix}", reserved=RESERVED) == f"img.{name}.{suffix}"


@given(st.text(max_size=300))
def test_any_text_is_either_refused_clearly_or_a_well_formed_hostname(raw: str) -> None:
    try:
        hostname = normalize_hostname(raw)
    except InvalidHostnameError as err:
        message = str(err)
    else:
        message = ""
    if message:
        return  # refused, with a reason
    assert len(hostname) <= 253
    assert hostname.isascii()
    for part in hostname.split("."):
        assert 1 <= len(part) <= 63
        assert LDH_LABEL.match(part)
