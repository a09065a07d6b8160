"""Which hostnames a user may verify as a custom domain, and their canonical form.

The rules, in order (each refusal names the rule it broke):

- IDNA: a name is mapped with UTS #46 (non-transitional: ``ß``, ``ς``, ZWJ and
  ZWNJ are kept, not folded) and each Unicode label converted to its A-label
  under IDNA 2008 (the ``idna`` package), so ``Bücher.example`` becomes
  ``xn--bcher-kva.example`` and ``faß.de`` becomes ``xn--fa-hia.de``, never
  ``fass.de``. Code points IDNA 2008 disallows (symbols, emoji) are refused.
  ASCII letters are lower-cased; one trailing dot is dropped. An ``xn--`` label
  given directly must be the canonical A-label of a valid U-label.
- Length: at most 253 characters in all, each label 1 to 63.
- LDH: labels are letters, digits and hyphens, never starting or ending with a
  hyphen; a hyphen pair in positions 3-4 only as ``xn--``.
- Not an IP address, not all-numeric at the top level, no ``*`` wildcard.
- A subdomain, not an apex: the name must have at least one label more than its
  registrable domain, the public suffix plus one label. Public suffixes come
  from the Public Suffix List, ICANN and private sections, as bundled with the
  installed ``publicsuffixlist`` package (read from its package directory, never
  downloaded; a new list arrives with a new package version). So
  ``example.co.uk``, ``example.gov.br``, ``example.k12.ca.us`` and
  ``alice.github.io`` are apexes and ``img.example.gov.br`` is not. A top-level
  label the list does not know counts as a one-label suffix.
- Not ours: not the fallback CNAME's registrable domain or anything under it, nor
  any domain listed in ``PIXFLARE_OWN_DOMAINS`` or under it.

Whether another owner already claimed the name is the domains table's call
(a conditional write), not this module's.

The list is parsed on first use (tens of milliseconds), not at import: the
domain worker imports this module but only needs :func:`normalize_hostname`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import idna

from lambdas.shared.errors import PermanentError

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

MAX_HOSTNAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
VERIFY_LABEL = "_pixflare-verify"

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class InvalidHostnameError(PermanentError):
    """The hostname cannot be a custom domain; the message says which rule it broke."""


def _shown(raw: str) -> str:
    """The user's input for an error message, cut short so a huge input stays readable."""
    return repr(raw if len(raw) <= 80 else raw[:77] + "...")


@functools.cache
def _suffix_list() -> PublicSuffixList:
    """The Public Suffix List bundled with the package, parsed once, on first use.

    Its Unicode rules are kept as they are (no IDNA 2003 copies of them): lookups
    are made with U-labels, see :func:`_lookup_form`.
    """
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(accept_encoded_idn=False)


def _lookup_form(label: str) -> str:
    """A normalized label as the list spells it: A-labels as their U-label."""
    if label.startswith("xn--"):
        try:
            return idna.ulabel(label)
        except idna.IDNAError:
            return label
    return label


def _map_uts46(text: str, raw: str) -> str:
    """UTS #46 mapping (case folding, width, full stops such as U+3002), non-transitional."""
    if text.isascii():
        return text.lower()
    try:
        # STD3 rules off: an ASCII character outside LDH is refused below, by name.
        return idna.uts46_remap(text, std3_rules=False)
    except idna.IDNAError as err:
        raise InvalidHostnameError(f"{_shown(raw)}: not valid IDNA ({err})") from None


def _label_to_ascii(label: str, hostname: str) -> str:
    if label.isascii():
        ascii_label = label
    else:
        try:
            ascii_label = idna.alabel(label).decode("ascii")
        except idna.IDNAError as err:
            raise InvalidHostnameError(
                f"{_shown(hostname)}: label {label!r} is not valid IDNA ({err})"
            ) from None
    if ascii_label.startswith("xn--"):
        try:
            idna.ulabel(ascii_label)
        except idna.IDNAError as err:
            raise InvalidHostnameError(
                f"{_shown(hostname)}: label {ascii_label!r} is not a valid IDNA A-label ({err})"
            ) from None
    return ascii_label


def normalize_hostname(raw: str) -> str:
    """The canonical ASCII form of a hostname, checked for syntax only (no policy)."""
    if not isinstance(raw, str):
        raise InvalidHostnameError("a hostname must be text")
    text = raw.strip()
    if not text:
        raise InvalidHostnameError("the hostname is empty")
    text = _map_uts46(text, raw)
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
    """The public suffix of a normalized hostname, from the Public Suffix List.

    A top-level label the list does not know is a suffix of its own.
    """
    labels = hostname.split(".")
    found = _suffix_list().publicsuffix(".".join(_lookup_form(label) for label in labels))
    count = found.count(".") + 1 if found else 1
    return ".".join(labels[-count:])


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
