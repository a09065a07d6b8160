"""The custom-domain hostname rules: examples and properties."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lambdas.domain.hostnames import (
    InvalidHostnameError,
    normalize_hostname,
    own_domains,
    public_suffix,
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
        # Public Suffix List: one label more than the registrable domain
        ("img.example.gov.br", "img.example.gov.br"),
        ("img.example.k12.ca.us", "img.example.k12.ca.us"),
        ("img.city.kawasaki.jp", "img.city.kawasaki.jp"),  # an exception rule
        ("img.alice.github.io", "img.alice.github.io"),  # the list's private section
        ("img.example.公司.cn", "img.example.xn--55qx5d.cn"),  # a Unicode suffix
        ("img.example.xn--55qx5d.cn", "img.example.xn--55qx5d.cn"),
        ("img.example.test", "img.example.test"),  # a TLD the list does not know
        # IDNA 2008 with UTS #46, non-transitional: deviation characters are kept
        ("fotos.faß.de", "fotos.xn--fa-hia.de"),
        ("FOTOS.FAß.DE", "fotos.xn--fa-hia.de"),
        ("img.βόλος.com", "img.xn--nxasmm1c.com"),  # final sigma (UTS #46's own example)
        ("img.xn--fa-hia.de", "img.xn--fa-hia.de"),
        ("\uff29\uff2d\uff27\uff0eExample\uff0ecom", "img.example.com"),  # full width
        ("im\u00adg.example.com", "img.example.com"),  # a soft hyphen is ignored
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
        # Apexes and suffixes under the Public Suffix List
        ("example.gov.br", "example.gov.br is an apex"),
        ("example.k12.ca.us", "example.k12.ca.us is an apex"),
        ("example.nom.br", "public suffix"),  # *.nom.br: a suffix itself
        ("nom.br", "public suffix"),
        ("city.kawasaki.jp", "apex"),
        ("alice.github.io", "apex"),
        ("example.公司.cn", "example.xn--55qx5d.cn is an apex"),
        ("img.faß.pixflare.net", "own domain"),
        # IDNA 2008: what IDNA 2003 accepted but 2008 disallows
        ("img.♥.example.com", "not valid IDNA"),
        ("img.a\u200db.example.com", "not valid IDNA"),  # ZWJ outside its context
        ("img.xn--fass-hia.de", "A-label"),  # not the canonical encoding
        ("img.\ufffd.example.com", "not valid IDNA"),
    ],
)
def test_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidHostnameError, match=re.escape(reason)):
        validate_hostname(raw, reserved=RESERVED)


def test_registrable_domain_follows_the_public_suffix_list() -> None:
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert registrable_domain("a.b.example.com") == "example.com"
    assert registrable_domain("a.b.example.gov.br") == "example.gov.br"
    assert registrable_domain("a.example.k12.ca.us") == "example.k12.ca.us"
    assert registrable_domain("a.b.example.nom.br") == "b.example.nom.br"
    assert public_suffix("img.example.xn--55qx5d.cn") == "xn--55qx5d.cn"
    assert public_suffix("img.example.invalidtld") == "invalidtld"


def test_faß_and_fass_are_two_domains() -> None:
    """IDNA 2003 (and transitional UTS #46) folded ß to ss: another owner's name."""
    assert validate_hostname("fotos.faß.de") != validate_hostname("fotos.fass.de")
    assert normalize_hostname("fotos.faß.de") == "fotos.xn--fa-hia.de"
    assert normalize_hostname("img.βόλος.com") != normalize_hostname("img.βόλοσ.com")


def test_the_suffix_list_is_the_bundled_one_read_only_and_never_fetched() -> None:
    """Lambda's /opt is read-only and a check has no time for a download: loading
    the list opens files for reading only and makes no network call."""
    probe = textwrap.dedent(
        """
        import json
        import sys
        import lambdas.domain.hostnames as hostnames
        seen = []
        def hook(event, args):
            if event == "open" and args[1] not in (None, "r", "rb"):
                seen.append(("write", args[0], args[1]))
            if event.startswith(("socket.", "urllib.", "http.")):
                seen.append(("network", event))
            if event == "open" and str(args[0]).endswith(".dat"):
                seen.append(("read", str(args[0])))
        assert "publicsuffixlist" not in sys.modules, "parsed at import"
        sys.addaudithook(hook)
        assert hostnames.registrable_domain("img.example.gov.br") == "example.gov.br"
        print(json.dumps(seen))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(done.stdout)
    assert [kind for kind, *_ in seen] == ["read"], seen
    assert seen[0][1].endswith("publicsuffixlist/public_suffix_list.dat")


@given(st.lists(label, min_size=1, max_size=4), label, tld)
def test_valid_subdomains_are_canonical_and_stable(sub: list[str], domain: str, top: str) -> None:
    assume(public_suffix(f"{domain}.{top}") == top)  # not co.uk, us.com, ...
    hostname = ".".join([*sub, domain, top])
    result = validate_hostname(hostname.upper() + ".", reserved=RESERVED)
    assert result == hostname
    # Validating the output changes nothing
    assert validate_hostname(result, reserved=RESERVED) == result


# Suffixes of two and more labels from the list (none has a wildcard rule below it).
MULTI_LABEL_SUFFIXES = [
    "co.uk", "com.au", "co.jp", "com.br", "gov.br", "k12.ca.us", "lib.ca.us",
    "ac.za", "edu.au", "github.io", "blogspot.com", "xn--55qx5d.cn",
]  # fmt: skip


@given(label, st.sampled_from(MULTI_LABEL_SUFFIXES))
def test_apex_under_a_multi_label_suffix_is_refused(name: str, suffix: str) -> None:
    assume(public_suffix(f"{name}.{suffix}") == suffix)  # not itself listed (e.g. nsw.edu.au)
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
