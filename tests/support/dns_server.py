"""A real DNS server on loopback (dnslib), serving zones a test changes while it runs.

``LoopbackDnsServer(zone)`` answers over UDP and TCP on one free port of
127.0.0.1, authoritatively, from a :class:`TestZone`: records can be added,
replaced or removed between queries, a name can be made to SERVFAIL, and UDP
answers over 512 bytes are truncated so clients must retry over TCP, as with a
real server. ``BlackHoleDnsServer`` reads UDP queries and never answers.

The demo's own, simpler server is pixflare.local.dns (it shares the serving part).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any

from dnslib import AAAA, CNAME, NS, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from pixflare.local.dns import LOOPBACK, serve_on_loopback, stop_servers

DEFAULT_TTL = 60
NEGATIVE_TTL = 300  # what a recursive resolver would cache a "no such name" for
MAX_CNAME_CHAIN = 8
MAX_TXT_CHUNK = 255


def _name(name: str) -> str:
    return name.rstrip(".").lower()


def _rdata(rtype: str, value: str) -> Any:
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "CNAME":
        return CNAME(value)
    if rtype == "NS":
        return NS(value)
    if rtype == "TXT":
        raw = value.encode()
        return TXT([raw[i : i + MAX_TXT_CHUNK] for i in range(0, len(raw), MAX_TXT_CHUNK)] or [b""])
    raise ValueError(f"unsupported record type {rtype}")


class TestZone:
    """Authoritative data for one or more zones; safe to change while the server runs."""

    __test__ = False  # not a pytest test class

    def __init__(self, *origins: str) -> None:
        self.origins = [_name(o) for o in origins] or ["example.test"]
        self._records: dict[tuple[str, str], list[str]] = {}
        self._servfail: set[str] = set()
        self._lock = threading.Lock()
        self.queries: list[tuple[str, str, str]] = []  # (name, type, protocol)

    # -- changing the data --------------------------------------------------------------
    def set(self, name: str, rtype: str, *values: str) -> None:
        """Replace the ``rtype`` records at ``name`` (no values: remove them)."""
        with self._lock:
            key = (_name(name), rtype.upper())
            if values:
                self._records[key] = list(values)
            else:
                self._records.pop(key, None)

    def remove(self, name: str) -> None:
        """Every record at ``name``."""
        with self._lock:
            for key in [k for k in self._records if k[0] == _name(name)]:
                del self._records[key]

    def servfail(self, name: str, failing: bool = True) -> None:
        with self._lock:
            (self._servfail.add if failing else self._servfail.discard)(_name(name))

    def add_delegation(self, origin: str, nameserver: str, address: str) -> None:
        """NS for ``origin`` pointing at ``nameserver``, with its A record (glue)."""
        self.set(origin, "NS", nameserver)
        self.set(nameserver, "A", address)

    # -- answering ----------------------------------------------------------------------
    def _origin_of(self, name: str) -> str | None:
        matches = [o for o in self.origins if name == o or name.endswith("." + o)]
        return max(matches, key=len) if matches else None

    def _exists(self, name: str) -> bool:
        # A name with no records but with records below it exists (an empty non-terminal).
        return any(n == name or n.endswith("." + name) for n, _ in self._records) or (
            name in self.origins
        )

    def _soa(self, origin: str) -> RR:
        return RR(
            origin,
            QTYPE.SOA,
            ttl=DEFAULT_TTL,
            rdata=SOA(
                f"ns1.{origin}",
                f"hostmaster.{origin}",
                (1, 3600, 600, 86400, NEGATIVE_TTL),
            ),
        )

    def answer(self, request: DNSRecord, protocol: str) -> DNSRecord:
        qname = _name(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        reply = request.reply()  # sets aa (authoritative) and ra
        with self._lock:
            self.queries.append((qname, qtype, protocol))
            origin = self._origin_of(qname)
            if origin is None:
                reply.header.rcode = RCODE.REFUSED
                return reply
            if qname in self._servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            name = qname
            for _ in range(MAX_CNAME_CHAIN):
                if qtype == "SOA" and name in self.origins:
                    reply.add_answer(self._soa(name))
                    return reply
                values = self._records.get((name, qtype))
                if values:
                    for value in values:
                        rtype = getattr(QTYPE, qtype)
                        rdata = _rdata(qtype, value)
                        reply.add_answer(RR(name, rtype, ttl=DEFAULT_TTL, rdata=rdata))
                    return reply
                cname = self._records.get((name, "CNAME"))
                if not cname or qtype == "CNAME":
                    break
                reply.add_answer(RR(name, QTYPE.CNAME, ttl=DEFAULT_TTL, rdata=CNAME(cname[0])))
                name = _name(cname[0])
                if self._origin_of(name) is None:
                    return reply  # out of our zones: the client follows it elsewhere
            if not reply.rr and not self._exists(name):
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa(self._origin_of(name) or origin))
            return reply


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: TestZone) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        return self.zone.answer(request, handler.protocol)


class _TruncatingHandler(DNSHandler):  # type: ignore[misc]
    udplen = 512  # classic DNS over UDP: longer answers come back truncated (TC)


def _quiet_logger() -> DNSLogger:
    return DNSLogger(logf=lambda _text: None)


class LoopbackDnsServer:
    """UDP and TCP on the same free port of 127.0.0.1; use as a context manager."""

    def __init__(self, zone: TestZone) -> None:
        self.zone = zone
        self.port = 0
        self._servers: list[DNSServer] = []

    @property
    def nameserver(self) -> str:
        """As PIXFLARE_DNS_NAMESERVERS expects it."""
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> LoopbackDnsServer:
        self.port, self._servers = serve_on_loopback(
            _ZoneResolver(self.zone),
            logger=_quiet_logger(),
            handler=_TruncatingHandler,
            poll_interval=0.02,
        )
        return self

    def stop(self) -> None:
        stop_servers(self._servers)
        self._servers = []

    def __enter__(self) -> LoopbackDnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BlackHoleDnsServer:
    """A UDP socket on 127.0.0.1 that reads every query and never answers."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((LOOPBACK, 0))
        self._socket.settimeout(0.05)
        self.port = self._socket.getsockname()[1]
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    @property
    def nameserver(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _drain(self) -> None:
        while not self._stop.is_set():  # ends when stop() is called
            try:
                self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1

    def __enter__(self) -> BlackHoleDnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


def verification_records(hostname: str, target: str, token: str) -> Iterable[tuple[str, str, str]]:
    """The two records ``pixflare domain add`` asks a user to create, as (name, type, value)."""
    return ((hostname, "CNAME", target), (f"_pixflare-verify.{hostname}", "TXT", token))
