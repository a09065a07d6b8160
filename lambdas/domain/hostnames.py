"""Which hostnames a user may verify as a custom domain, and their canonical form.

The rules, in order (each refusal names the rule it broke):

- IDNA: a Unicode name is converted to its ASCII form (``xn--`` labels) with the
  standard library's IDNA codec (IDNA 2003 ToASCII, so ``Bücher.example`` becomes
  ``xn--bcher-kva.example``); ASCII letters are lower-cased; one trailing dot is
  dropped. An ``xn--`` label given directly must decode and round-trip.
- Length: at most 253 characters in all, each label 1 to 63.
- LDH: labels are letters, digits and hyphens, never starting or ending with a
  hyphen; a hyphen pair in positions 3-4 only as ``xn--``.
- Not an IP address, not all-numeric at the top level, no ``*`` wildcard.
- A subdomain, not an apex: the name must have at least one label more than its
  registrable domain. The registrable domain is the public suffix plus one
  label; the public suffix is one of the multi-label suffixes in
  :data:`MULTI_LABEL_SUFFIXES` when the name ends in one (so ``example.co.uk`` is
  an apex and ``cdn.example.co.uk`` is not), else the last label. A name under a
  multi-label suffix missing from that list is judged by the last label alone, so
  it needs three labels, like any other name.
- Not ours: not the fallback CNAME's registrable domain or anything under it, nor
  any domain listed in ``PIXFLARE_OWN_DOMAINS`` or under it.

Whether another owner already claimed the name is the domains table's call
(a conditional write), not this module's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from encodings import idna as idna_codec

from lambdas.shared.errors import PermanentError

MAX_HOSTNAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
VERIFY_LABEL = "_pixflare-verify"

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Full stops other than "." that IDNA treats as label separators.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

# Common second-level public suffixes, so their apexes are recognised as apexes.
# Deliberately small (no download of the Public Suffix List at run time).
MULTI_LABEL_SUFFIXES = frozenset(
    {
        # United Kingdom
        "co.uk", "org.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk", "ac.uk", "gov.uk", "sch.uk",
        # Australia, New Zealand
        "com.au", "net.au", "org.au", "edu.au", "gov.au", "id.au", "asn.au",
        "co.nz", "net.nz", "org.nz", "ac.nz", "govt.nz", "geek.nz",
        # Asia
        "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "gr.jp",
        "co.kr", "or.kr", "ne.kr", "com.cn", "net.cn", "org.cn", "com.hk", "com.tw",
        "com.sg", "com.my", "co.id", "com.ph", "com.vn", "co.in", "net.in", "org.in",
        "co.th", "co.il", "org.il", "com.tr", "com.sa", "ae.org",
        # Americas, Africa, Europe
        "com.br", "net.br", "org.br", "com.mx", "com.ar", "com.co", "com.pe", "co.za",
        "org.za", "com.ng", "co.ke", "com.eg", "com.ua", "com.pl", "co.at", "or.at",
    }
)  # fmt: skip


class InvalidHostnameError(PermanentError):
    """The hostname cannot be a custom domain; the message says which rule it broke."""


def _shown(raw: str) -> str:
    """The user's input for an error message, cut short so a huge input stays readable."""
    return repr(raw if len(raw) <= 80 else raw[:77] + "...")


def _label_to_ascii(label: str, hostname: str) -> str:
    if label.isascii():
        ascii_label = label.lower()
    else:
        try:
            ascii_label = idna_codec.ToASCII(label).decode("ascii").lower()
        except UnicodeError as err:
            raise InvalidHostnameError(
                f"{_shown(hostname)}: label {label!r} is not valid IDNA ({err})"
            ) from None
    if ascii_label.startswith("xn--"):
        try:
            idna_codec.ToUnicode(ascii_label.encode("ascii"))
        except (UnicodeError, ValueError) as err:
            raise InvalidHostnameError(
                f"{_shown(hostname)}: label {ascii_label!r} is not a valid IDNA A-label ({err})"
            ) from None
    return ascii_label


def normalize_hostname(raw: str) -> str:
    """The canonical ASCII form of a hostname, checked for syntax only (no policy)."""
    if not isinstance(raw, str):
        raise InvalidHostnameError("a hostname must be text")
    text = raw.strip().translate(_DOTS)
    if not text:
        raise InvalidHostnameError("the hostname is empty")
    if "*" in text:
        raise InvalidHostnameError(f"{_shown(raw)}: wildcards are not allowed")
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidHostnameError(f"{_shown(raw)}: an IP address is not a hostname")
    if text.endswith("."):
        text = text[:-1]
    labels = text.split(".")
    if any(not label for label in labels):
        raise InvalidHostnameError(f"{_shown(raw)}: empty label")
    ascii_labels = [_label_to_ascii(label, raw) for label in labels]
    for label in ascii_labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidHostnameError(
                f"{_shown(raw)}: label {label[:20]!r}... is {len(label)} characters, "
                f"over {MAX_LABEL_LENGTH}"
            )
        if not _LDH.match(label):
            raise InvalidHostnameError(
                f"{_shown(raw)}: label {label!r} must be letters, digits and hyphens, "
                "not starting or ending with a hyphen"
            )
        if label[2:4] == "--" and not label.startswith("xn--"):
            raise InvalidHostnameError(
                f"{_shown(raw)}: label {label!r} has '--' in positions 3-4 (reserved for xn--)"
            )
    hostname = ".".join(ascii_labels)
    if len(hostname) > MAX_HOSTNAME_LENGTH:
        raise InvalidHostnameError(
            f"{_shown(raw)}: {len(hostname)} characters, over the {MAX_HOSTNAME_LENGTH} limit"
        )
    if ascii_labels[-1].isdigit():
        raise InvalidHostnameError(f"{_shown(raw)}: the top-level label cannot be all digits")
    return hostname


def public_suffix(hostname: str) -> str:
    """The public suffix of a normalized hostname (see the module docstring)."""
    labels = hostname.split(".")
    if len(labels) >= 2 and ".".join(labels[-2:]) in MULTI_LABEL_SUFFIXES:
        return ".".join(labels[-2:])
    return labels[-1]


def registrable_domain(hostname: str) -> str:
    """The public suffix plus one label: what a registrar sells (``example.co.uk``)."""
    suffix = public_suffix(hostname)
    labels = hostname.split(".")
    suffix_labels = suffix.count(".") + 1
    return ".".join(labels[-(suffix_labels + 1) :]) if len(labels) > suffix_labels else suffix


def own_domains(fallback_cname: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Domains nobody may claim: the fallback CNAME's registrable domain and the extras."""
    domains: set[str] = set()
    if fallback_cname.strip():
        domains.add(registrable_domain(normalize_hostname(fallback_cname)))
    for domain in extra:
        if domain.strip():
            domains.add(normalize_hostname(domain))
    return frozenset(domains)


def _within(hostname: str, domain: str) -> bool:
    return hostname == domain or hostname.endswith("." + domain)


def validate_hostname(raw: str, *, reserved: Iterable[str] = ()) -> str:
    """The canonical hostname if a user may verify it as a custom domain; else raises.

    ``reserved`` is :func:`own_domains`' result: the name may not be one of them or under one.
    """
    hostname = normalize_hostname(raw)
    if "." not in hostname:
        raise InvalidHostnameError(f"{_shown(raw)}: a single label is not a domain name")
    suffix = public_suffix(hostname)
    if hostname == suffix:
        raise InvalidHostnameError(f"{_shown(raw)}: {hostname} is a public suffix, not a domain")
    apex = registrable_domain(hostname)
    if hostname == apex:
        raise InvalidHostnameError(
            f"{_shown(raw)}: {hostname} is an apex domain; use a subdomain such as img.{hostname} "
            "(an apex cannot carry a CNAME)"
        )
    for domain in reserved:
        if _within(hostname, domain):
            raise InvalidHostnameError(f"{_shown(raw)}: {domain} is Pixflare's own domain")
    return hostname


def verification_name(hostname: str) -> str:
    """Where the TXT record holding the token lives."""
    return f"{VERIFY_LABEL}.{hostname}"
