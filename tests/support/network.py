"""Resolvers and a transport for endpoint-policy tests that never leave loopback.

A case that needs a host to look public injects a resolver that says so, and a
:class:`RecordingConnector` in place of the backup client's socket opener: it
records the address the client would have connected to and connects to a server
on 127.0.0.1 instead (or refuses), so no test opens a connection to any address
outside loopback, not even one that counts as public.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.exception
import dns.resolver

from lambdas.shared.endpoint_policy import EndpointUnresolvedError, IPAddress

# serve_forever's poll: shutdown() waits up to one (the default 0.5 s, each server, each test).
POLL_SECONDS = 0.05

LOOPBACK = "127.0.0.1"
# Addresses that count as public; nothing ever connects to them (see RecordingConnector).
PUBLIC_V4 = "93.184.215.14"
PUBLIC_V4_B = "8.8.4.4"
PUBLIC_V6 = "2606:4700:4700::1111"


@dataclass
class StaticResolver:
    """host -> addresses, as a test says; records every lookup."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise EndpointUnresolvedError(f"the endpoint's host {host} does not resolve")
        return list(self.answers[host])


class ZoneResolver:
    """A resolver asking a DNS server on loopback (tests/support/dns_server.py) for A and
    AAAA, the way the system resolver would ask a recursive one; records every lookup."""

    def __init__(self, nameserver_port: int) -> None:
        self.resolver = dns.resolver.Resolver(configure=False)
        self.resolver.nameservers = [LOOPBACK]
        self.resolver.port = nameserver_port
        self.resolver.lifetime = 2.0
        self.resolver.cache = None
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            try:
                answer = self.resolver.resolve(host, rtype, search=False)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as err:
                raise EndpointUnresolvedError(f"{host}: {err}") from err
            found.extend(rdata.to_text() for rdata in answer)
        if not found:
            raise EndpointUnresolvedError(f"the endpoint's host {host} does not resolve")
        return found


class RecordingConnector:
    """Stands in for lambdas.backup.remote.open_socket: records (address, port) and
    connects to ``routes[address]`` on 127.0.0.1 (or ``default`` port), else refuses."""

    def __init__(self, routes: Mapping[str, int] | None = None, default: int | None = None) -> None:
        self.routes = dict(routes or {})
        self.default = default
        self.attempts: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(
        self,
        address: IPAddress,
        port: int,
        timeout: float | None,
        source_address: tuple[str, int] | None,
        socket_options: Sequence[tuple[int, int, int]],
    ) -> socket.socket:
        with self._lock:
            self.attempts.append((str(address), port))
        target = self.routes.get(str(address), self.default)
        if target is None:
            raise ConnectionRefusedError(f"no loopback route for {address}")
        return socket.create_connection((LOOPBACK, target), timeout=timeout)

    @property
    def addresses(self) -> set[str]:
        return {address for address, _ in self.attempts}


@dataclass
class Hit:
    method: str
    path: str
    host: str


class RedirectingServer:
    """A loopback HTTP server answering every request with ``status`` and a Location
    (and optional extra headers); records what it was asked."""

    def __init__(self, status: int, location: str, headers: Mapping[str, str] | None = None):
        self.status = status
        self.location = location
        self.headers = dict(headers or {})
        self.hits: list[Hit] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.hits.append(Hit(self.command, self.path, self.headers.get("Host", "")))
                self.send_response(owner.status)
                self.send_header("Location", owner.location)
                for name, value in owner.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
        )

    def __enter__(self) -> RedirectingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def redirecting(
    status: int, location: str, headers: Mapping[str, str] | None = None
) -> Iterator[RedirectingServer]:
    with RedirectingServer(status, location, headers) as server:
        yield server


# -- TLS on loopback --------------------------------------------------------------------------


def self_signed(hostname: str, directory: str) -> tuple[str, str]:
    """A certificate for ``hostname`` (its own CA) and its key: (cert path, key path)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = f"{directory}/{hostname}.pem", f"{directory}/{hostname}.key"
    with open(cert_path, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class TlsProxy:
    """TLS on 127.0.0.1 in front of a plain-HTTP server on 127.0.0.1 (an S3 target),
    with the given certificate; records the SNI name of each handshake."""

    def __init__(self, upstream_port: int, cert_path: str, key_path: str) -> None:
        import ssl

        self.upstream_port = upstream_port
        self.server_names: list[str | None] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_path, key_path)

        def remember(_sock: object, name: str | None, _ctx: object) -> None:
            self.server_names.append(name)

        self.context.sni_callback = remember  # type: ignore[assignment]
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            wrapped = self.context.wrap_socket(client, server_side=True)
        except OSError:
            client.close()
            return
        upstream = socket.create_connection((LOOPBACK, self.upstream_port))
        threading.Thread(target=_pump, args=(upstream, wrapped), daemon=True).start()
        _pump(wrapped, upstream)

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
