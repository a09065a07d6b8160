"""Which backup endpoints an owner may send their images to: pure checks, no connection.

An owner's backup destination is user input, and the backups run inside our
functions: a URL naming ``127.0.0.1:9001`` (the Lambda Runtime API), a VPC-private
service or ``169.254.169.254`` (instance metadata) must never receive our signed
requests. By default an endpoint must be ``https://`` and its host must resolve
only to public addresses; every address it resolves to is classified, and one
refused address refuses the endpoint. Literal IPs are classified the same way,
including the decimal, octal and hex spellings ``getaddrinfo`` accepts
(``http://2130706433/``, ``http://0177.0.0.1/``), IPv4-mapped IPv6 and the NAT64
and 6to4 prefixes, which carry an IPv4 address inside.

The operator's opt-in (``BACKUP_ALLOW_PRIVATE_ENDPOINTS``) allows plain ``http://``
and private, loopback, link-local and carrier-grade NAT addresses (a MinIO on the
operator's own network, the local stack, the tests). Metadata, unspecified,
multicast and reserved addresses are refused even then: no S3 service lives there.

The resolver is injectable (``host, port -> addresses``); the default is
``socket.getaddrinfo``. The addresses returned by a check are the only ones the
backup client may then connect to (lambdas/backup/remote.py pins them).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from lambdas.shared.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from lambdas.shared.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (text, as getaddrinfo gives them).
Resolver = Callable[[str, int], Sequence[str]]

PUBLIC_ONLY = "backups go to public S3-compatible services only"
HTTPS_ONLY = "backups go to https:// endpoints only"
DEFAULT_PORTS = {"http": 80, "https": 443}

Category = Literal[
    "metadata",
    "unspecified",
    "loopback",
    "link-local",
    "private",
    "carrier-grade NAT",
    "multicast",
    "reserved",
    "special-purpose",
]
# Never an S3 service, whatever the operator allows.
ALWAYS_REFUSED: frozenset[Category] = frozenset(
    {"metadata", "unspecified", "multicast", "reserved"}
)
_NOUNS: dict[Category, str] = {
    "metadata": "the cloud instance metadata address",
    "unspecified": "an unspecified address",
    "loopback": "a loopback address",
    "link-local": "a link-local address",
    "private": "a private address",
    "carrier-grade NAT": "a carrier-grade NAT address",
    "multicast": "a multicast address",
    "reserved": "a reserved address",
    "special-purpose": "a special-purpose (non-public) address",
}

_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # EC2 / Lambda metadata (IMDS)
        ipaddress.ip_address("169.254.170.2"),  # ECS task metadata and credentials
        ipaddress.ip_address("fd00:ec2::254"),  # IMDS over IPv6
    }
)
_V4 = ipaddress.IPv4Network
_V4_RULES: tuple[tuple[ipaddress.IPv4Network, Category], ...] = (
    (_V4("0.0.0.0/8"), "unspecified"),  # "this network": 0.0.0.0 reaches the host itself
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # and 255.255.255.255, the broadcast address
)
_V6_RULES: tuple[tuple[ipaddress.IPv6Network, Category], ...] = (
    (ipaddress.IPv6Network("::1/128"), "loopback"),
    (ipaddress.IPv6Network("::/128"), "unspecified"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local"),
    (ipaddress.IPv6Network("fc00::/7"), "private"),  # unique local (ULA)
    (ipaddress.IPv6Network("fec0::/10"), "private"),  # site-local (deprecated)
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "private"),  # local-use NAT64 (RFC 8215)
    (ipaddress.IPv6Network("ff00::/8"), "multicast"),
    (ipaddress.IPv6Network("::/8"), "reserved"),  # IPv4-compatible and other oddities
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix (RFC 6052)
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
# What inet_aton (and so getaddrinfo) reads as an IPv4 address: 1 to 4 parts, each
# decimal, octal (leading 0) or hex (0x).
_INET_ATON = re.compile(r"(?:(?:0[xX][0-9a-fA-F]*|[0-9]+)\.){0,3}(?:0[xX][0-9a-fA-F]*|[0-9]+)")


class EndpointRefusedError(PermanentError):
    """The endpoint is not one backups may be sent to; the message says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EndpointUnresolvedError(TransientError):
    """The endpoint's host did not resolve now (DNS may be down): worth trying again later."""


@dataclass(frozen=True)
class Verdict:
    """What one address is: public (category None) or the kind of address refused."""

    address: IPAddress
    category: Category | None
    via: IPAddress | None = None  # the IPv4 address inside a mapped / NAT64 / 6to4 one

    def shown(self) -> str:
        if self.via is None:
            return str(self.address)
        return f"{self.address}, which carries {self.via}"


def parse_address(text: str) -> IPAddress | None:
    """A literal IP address, in any spelling getaddrinfo takes as one; None for a name."""
    host = text.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _INET_ATON.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None  # a part out of range: getaddrinfo would treat it as a name
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def _category(address: IPAddress) -> Category | None:
    if address in _METADATA:
        return "metadata"
    rules: Sequence[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Category]]
    rules = _V4_RULES if address.version == 4 else _V6_RULES
    for network, category in rules:
        if address in network:
            return category
    if not address.is_global:
        # Documentation, benchmarking, IETF protocol assignments, Teredo, ...
        return "special-purpose"
    return None


def classify(address: IPAddress) -> Verdict:
    """Public (``category`` None) or which kind of refused address this is."""
    if isinstance(address, ipaddress.IPv6Address):
        bare = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
        if bare in _METADATA:
            return Verdict(address, "metadata")
        inner = _embedded_v4(bare)
        if inner is not None:
            return Verdict(address, _category(inner), via=inner)
        return Verdict(address, _category(bare))
    return Verdict(address, _category(address))


def system_resolver(host: str, port: int) -> list[str]:
    """Every address getaddrinfo gives for ``host`` (TCP), in its order, each once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise EndpointUnresolvedError(
            f"the endpoint's host {host} does not resolve: {err}"
        ) from err
    found: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0])
        if text not in found:
            found.append(text)
    return found


@dataclass(frozen=True)
class CheckedEndpoint:
    """An endpoint that passed: where it is, and the only addresses it may be reached at."""

    url: str
    scheme: str
    host: str  # lower case, without a trailing dot
    port: int
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class EndpointPolicy:
    """What a backup endpoint may be (see the module's docstring)."""

    allow_private: bool = False
    allow_http: bool = False
    # None: system_resolver (looked up when used, so a test may replace it).
    resolver: Resolver | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> EndpointPolicy:
        """The deployment's policy: BACKUP_ALLOW_PRIVATE_ENDPOINTS allows private and http."""
        allowed = settings.backup_allow_private_endpoints
        return cls(allow_private=allowed, allow_http=allowed)

    # -- URLs ----------------------------------------------------------------------------
    def check_url(self, url: str) -> CheckedEndpoint:
        """The endpoint and its checked addresses, or EndpointRefusedError saying why not."""
        scheme, host, port = parse_endpoint(url)
        self.check_scheme(scheme)
        return CheckedEndpoint(url, scheme, host, port, self.check_host(host, port))

    def check_scheme(self, scheme: str) -> None:
        if scheme == "http" and not self.allow_http:
            raise EndpointRefusedError(f"the endpoint uses plain http://; {HTTPS_ONLY}")

    # -- hosts ---------------------------------------------------------------------------
    def check_host(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """Every address ``host`` is or resolves to, all of them allowed; else refused."""
        literal = parse_address(host)
        if literal is not None:
            self._refuse_if_any([literal], "is")
            return (literal,)
        answers = (self.resolver or system_resolver)(host, port)
        addresses: list[IPAddress] = []
        for text in answers:
            address = parse_address(text)
            if address is None:
                raise EndpointRefusedError(
                    f"the endpoint's host {host} resolved to {text!r}, which is not an address"
                )
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise EndpointUnresolvedError(f"the endpoint's host {host} has no addresses")
        self._refuse_if_any(addresses, "resolves to")
        return tuple(addresses)

    def refusal(self, verdict: Verdict) -> bool:
        if verdict.category is None:
            return False
        return verdict.category in ALWAYS_REFUSED or not self.allow_private

    def _refuse_if_any(self, addresses: Sequence[IPAddress], verb: str) -> None:
        for address in addresses:
            verdict = classify(address)
            if self.refusal(verdict):
                assert verdict.category is not None
                raise EndpointRefusedError(
                    f"the endpoint {verb} {_NOUNS[verdict.category]} ({verdict.shown()}); "
                    f"{PUBLIC_ONLY}"
                )


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an endpoint URL; EndpointRefusedError when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise EndpointRefusedError(f"the endpoint {url!r} is not a URL: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise EndpointRefusedError(f"the endpoint {url!r} must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefusedError("the endpoint must not carry a user name or password")
    if parts.fragment or parts.query:
        raise EndpointRefusedError("the endpoint must not carry a query or a fragment")
    host = normalize_host(parts.hostname)
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def normalize_host(host: str) -> str:
    """How hosts are compared: lower case, no brackets, no trailing dot."""
    return host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
