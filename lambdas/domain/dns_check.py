"""Does a hostname's DNS prove the user set it up: CNAME to our target, TXT with the token.

Queries go straight to authoritative servers: the ones in PIXFLARE_DNS_NAMESERVERS
when set (``host[:port]``, IPv6 as ``[addr]:port``), otherwise the zone's own
nameservers, found by walking up from the hostname with the system resolver. Asking
the authority means a recursive resolver's negative cache (from a check made
before the user added the records) can never hide a fresh record.

Everything that is not a clear pass is "not yet" with a reason: NXDOMAIN, no
answer, a wrong target or token, SERVFAIL, REFUSED, timeouts. Each query is
bounded by ``query_timeout`` and the whole check by the ``deadline`` the
caller passes (within the function's own), so a black-holed server can
slow a check down but never hang it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from lambdas.domain.hostnames import verification_name
from lambdas.shared.config import Settings
from lambdas.shared.deadline import Deadline
from lambdas.shared.errors import ConfigError, OutOfTimeError

QUERY_TIMEOUT_SECONDS = 2.0
# A check asks for the CNAME and the TXT record; one server timing out on the way
# costs one more query: 3 x 2 s.
QUERIES_PER_CHECK = 3
CHECK_WORST_CASE_SECONDS = QUERIES_PER_CHECK * QUERY_TIMEOUT_SECONDS
MAX_AUTHORITATIVE_SERVERS = 4
# Below this, a query is not worth starting.
MIN_QUERY_SECONDS = 0.05

Server = tuple[str, int]


@dataclass(frozen=True)
class DnsCheckResult:
    ok: bool
    reason: str | None = None  # None when ok; else why not yet, for the record's last_error
    flattened: bool = False  # passed on A/AAAA equal to the target's rather than a CNAME


class _UnansweredError(Exception):
    """No usable answer from any server (timeouts, SERVFAIL, REFUSED, out of time)."""


def parse_nameserver(spec: str) -> Server:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``[2001:db8::1]:53`` or ``ns.example.net[:port]``."""
    text = spec.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        port = int(port_text) if port_text else 53
    except ValueError:
        raise ConfigError(f"PIXFLARE_DNS_NAMESERVERS: bad port in {spec!r}") from None
    if not host or not 0 < port < 65536:
        raise ConfigError(f"PIXFLARE_DNS_NAMESERVERS: bad entry {spec!r}")
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _canonical(name: str | dns.name.Name) -> str:
    return str(name).rstrip(".").lower()


def _query_time(deadline: Deadline, most: float) -> float | None:
    """``most`` seconds, or the time left when less; None when not worth a query."""
    try:
        return deadline.cap(most, least=MIN_QUERY_SECONDS, what="DNS query")
    except OutOfTimeError:
        return None


class _Lookup:
    """Queries for one check: a fixed server list, one deadline, slow servers tried last."""

    def __init__(self, servers: Sequence[Server], deadline: Deadline, query_timeout: float):
        self.servers = list(servers)
        self.deadline = deadline
        self.query_timeout = query_timeout

    def ask(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """A NOERROR or NXDOMAIN response from the first server that gives one."""
        problems: list[str] = []
        for server in list(self.servers):
            timeout = _query_time(self.deadline, self.query_timeout)
            if timeout is None:
                problems.append("out of time")
                break
            host, port = server
            query = dns.message.make_query(name, rdtype)
            try:
                response, _ = dns.query.udp_with_fallback(query, host, timeout=timeout, port=port)
            except dns.exception.Timeout:
                problems.append(f"timed out asking {host}:{port}")
                # Ask it last from now on: it will likely time out again.
                self.servers.remove(server)
                self.servers.append(server)
                continue
            except (dns.exception.DNSException, OSError) as err:
                problems.append(f"{host}:{port} failed: {type(err).__name__}: {err}")
                continue
            rcode = response.rcode()
            if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return response
            problems.append(f"{dns.rcode.to_text(rcode)} from {host}:{port}")
        rtype = dns.rdatatype.to_text(rdtype)
        raise _UnansweredError(f"{rtype} {name}: {'; '.join(problems) or 'no nameservers'}")

    def addresses(self, name: str) -> set[str]:
        """A and AAAA values in the answers for ``name`` (through an in-answer CNAME chain)."""
        found: set[str] = set()
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            response = self.ask(name, rdtype)
            for rrset in response.answer:
                if rrset.rdtype == rdtype:
                    found.update(rdata.address for rdata in rrset)
        return found


class DnsChecker:
    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        query_timeout: float = QUERY_TIMEOUT_SECONDS,
        bootstrap: dns.resolver.Resolver | None = None,
        authoritative_port: int = 53,
    ) -> None:
        """``nameservers`` as in PIXFLARE_DNS_NAMESERVERS; empty means the zone's own.

        ``bootstrap`` is the recursive resolver used to find those (the system's by
        default); ``authoritative_port`` is where they listen (53 outside tests).
        """
        self.configured = [parse_nameserver(spec) for spec in nameservers]
        self.query_timeout = query_timeout
        self._bootstrap = bootstrap
        self.authoritative_port = authoritative_port

    @classmethod
    def from_settings(cls, settings: Settings) -> DnsChecker:
        return cls(settings.dns_nameservers)

    def bootstrap(self) -> dns.resolver.Resolver:
        if self._bootstrap is None:
            self._bootstrap = dns.resolver.Resolver()
        return self._bootstrap

    # -- finding whom to ask ------------------------------------------------------------
    def _recursive_addresses(self, name: str, deadline: Deadline) -> list[str]:
        resolver = self.bootstrap()
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            lifetime = _query_time(deadline, self.query_timeout)
            if lifetime is None:
                break
            try:
                answer = resolver.resolve(name, rdtype, lifetime=lifetime, search=False)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as err:
                raise _UnansweredError(f"resolving {name}: {type(err).__name__}: {err}") from None
            found.extend(rdata.address for rdata in answer)
        return found

    def _servers(self, hostname: str, deadline: Deadline) -> list[Server]:
        if self.configured:
            servers: list[Server] = []
            for host, port in self.configured:
                if _is_ip(host):
                    servers.append((host, port))
                else:
                    servers.extend((ip, port) for ip in self._recursive_addresses(host, deadline))
            if not servers:
                raise _UnansweredError("none of PIXFLARE_DNS_NAMESERVERS resolved to an address")
            return servers
        return self._authoritative_servers(hostname, deadline)

    def _authoritative_servers(self, hostname: str, deadline: Deadline) -> list[Server]:
        resolver = self.bootstrap()
        lifetime = _query_time(deadline, self.query_timeout * 2)
        if lifetime is None:
            raise _UnansweredError("out of time before finding the zone's nameservers")
        try:
            zone = dns.resolver.zone_for_name(hostname, resolver=resolver, lifetime=lifetime)
            lifetime = _query_time(deadline, self.query_timeout) or MIN_QUERY_SECONDS
            answer = resolver.resolve(zone, "NS", lifetime=lifetime)
        except dns.exception.DNSException as err:
            raise _UnansweredError(
                f"could not find the nameservers of {hostname}'s zone: {type(err).__name__}: {err}"
            ) from None
        names = sorted(_canonical(rdata.target) for rdata in answer)
        servers: list[Server] = []
        for ns in names:
            for address in self._recursive_addresses(ns, deadline):
                servers.append((address, self.authoritative_port))
            if len(servers) >= MAX_AUTHORITATIVE_SERVERS:
                break
        if not servers:
            raise _UnansweredError(f"the nameservers of {_canonical(zone)} have no addresses")
        return servers[:MAX_AUTHORITATIVE_SERVERS]

    def _target_addresses(self, target: str, lookup: _Lookup) -> set[str]:
        if self.configured:
            return lookup.addresses(target)
        return set(self._recursive_addresses(target, lookup.deadline))

    # -- the checks ---------------------------------------------------------------------
    def _cname_problem(
        self, hostname: str, target: str, lookup: _Lookup
    ) -> tuple[str | None, bool]:
        """(None, flattened) when the hostname points at the target; else (reason, False)."""
        response = lookup.ask(hostname, dns.rdatatype.CNAME)
        if response.rcode() == dns.rcode.NXDOMAIN:
            return f"{hostname} does not exist yet (NXDOMAIN)", False
        qname = dns.name.from_text(hostname)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == qname:
                got = _canonical(rrset[0].target)
                if got == target:
                    return None, False
                return f"CNAME {hostname} points to {got}, expected {target}", False
        # No CNAME: a provider that flattens CNAMEs serves the target's addresses instead.
        addresses = lookup.addresses(hostname)
        if not addresses:
            return f"no CNAME (or A/AAAA) record for {hostname} yet", False
        expected = self._target_addresses(target, lookup)
        if expected and addresses <= expected:
            return None, True
        shown = ", ".join(sorted(addresses)[:4])
        return (
            f"{hostname} has no CNAME and its addresses ({shown}) are not {target}'s",
            False,
        )

    @staticmethod
    def _txt_problem(hostname: str, token: str, lookup: _Lookup) -> str | None:
        name = verification_name(hostname)
        response = lookup.ask(name, dns.rdatatype.TXT)
        if response.rcode() == dns.rcode.NXDOMAIN:
            return f"no TXT record at {name} yet (NXDOMAIN)"
        values = [
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rdata in rrset
        ]
        if token in values:
            return None
        if values:
            return f"TXT {name} has {len(values)} value(s), none equal to the token"
        return f"no TXT record at {name} yet"

    def check(
        self, hostname: str, *, token: str, target: str, deadline: Deadline
    ) -> DnsCheckResult:
        """Pass when the CNAME (or flattened addresses) and the TXT token are both in place."""
        target = _canonical(target)
        try:
            lookup = _Lookup(self._servers(hostname, deadline), deadline, self.query_timeout)
        except _UnansweredError as err:
            return DnsCheckResult(ok=False, reason=str(err))
        problems: list[str] = []
        flattened = False
        try:
            cname_problem, flattened = self._cname_problem(hostname, target, lookup)
        except _UnansweredError as err:
            cname_problem = str(err)
        if cname_problem:
            problems.append(cname_problem)
        try:
            txt_problem = self._txt_problem(hostname, token, lookup)
        except _UnansweredError as err:
            txt_problem = str(err)
        if txt_problem:
            problems.append(txt_problem)
        if problems:
            return DnsCheckResult(ok=False, reason="; ".join(problems))
        return DnsCheckResult(ok=True, flattened=flattened)
