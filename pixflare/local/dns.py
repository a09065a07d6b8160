"""A tiny authoritative DNS server on loopback (dnslib) for the demo's custom domain.

It serves the records it is given (CNAME, TXT, A) over UDP and TCP on one port of
127.0.0.1, answers NXDOMAIN for other names, and is pointed at with
PIXFLARE_DNS_NAMESERVERS=127.0.0.1:PORT.
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

LOOPBACK = "127.0.0.1"
TTL = 30
_PORT_ATTEMPTS = 20


def _key(name: str) -> str:
    return name.rstrip(".").lower() + "."


class _Resolver(BaseResolver):
    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, str]]] = {}
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        reply.header.aa = 1
        name = _key(str(request.q.qname))
        wanted = QTYPE[request.q.qtype]
        with self.lock:
            records = list(self.records.get(name, []))
        if not records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in records:
            if rtype == wanted or (rtype == "CNAME" and wanted in ("A", "AAAA")):
                rdata = {"CNAME": lambda v: CNAME(v), "TXT": lambda v: TXT(v), "A": lambda v: A(v)}[
                    rtype
                ](value)
                reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=TTL))
        return reply


class LocalDnsServer:
    def __init__(self) -> None:
        self.port = 0
        self._resolver = _Resolver()
        self._servers: list[DNSServer] = []

    @property
    def nameserver(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def set(self, name: str, rtype: str, value: str) -> None:
        with self._resolver.lock:
            self._resolver.records.setdefault(_key(name), []).append((rtype.upper(), value))

    def start(self) -> LocalDnsServer:
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self.port, self._servers = serve_on_loopback(self._resolver, logger=quiet)
        return self

    def stop(self) -> None:
        stop_servers(self._servers)
        self._servers = []

    def __enter__(self) -> LocalDnsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve_on_loopback(
    resolver: BaseResolver,
    *,
    logger: DNSLogger,
    handler: type[DNSHandler] = DNSHandler,
    poll_interval: float = 0.05,
) -> tuple[int, list[DNSServer]]:
    """Serve ``resolver`` over UDP and TCP on one free port of 127.0.0.1: (port, servers)."""
    for _ in range(_PORT_ATTEMPTS):  # a free UDP port is not always free for TCP
        udp = DNSServer(resolver, address=LOOPBACK, port=0, handler=handler, logger=logger)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(
                resolver, address=LOOPBACK, port=port, tcp=True, handler=handler, logger=logger
            )
        except OSError:
            udp.server.server_close()
            continue
        servers = [udp, tcp]
        for server in servers:
            # A short poll interval keeps stop() quick (dnslib's start_thread uses 0.5 s).
            threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": poll_interval},
                daemon=True,
            ).start()
        return port, servers
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def stop_servers(servers: list[DNSServer]) -> None:
    for server in servers:
        server.server.shutdown()
        server.server.server_close()
