"""Clients for an owner's S3-compatible backup destination (AWS, MinIO, Backblaze B2, R2 ...).

boto3's default request checksums (CRC32 trailers on every upload) are refused or
mis-handled by several S3-compatible services, so checksums are only sent and
checked when an operation requires them. Timeouts are short: the backup function
has 60 s for a batch of ten, and a dead endpoint must fail fast and be retried later.

An owner's endpoint is user input, so a client for it is made only after the
endpoint passes the :class:`EndpointPolicy` (lambdas/shared/endpoint_policy.py), and
it connects only to the addresses that check returned: its connections never look
the host up again (:class:`PinnedSession`), so a DNS answer that changes after the
check (rebinding) cannot move them. A host the client meets later (a bucket's
virtual host, say) is looked up and checked once, the same way, before its first
connection. No environment proxy is used for a destination (a proxy would resolve
the host itself), and HTTP redirects are never followed: botocore sends with
``Retry(False)``, and its S3 region redirect re-resolves the configured endpoint
(same host) rather than following a Location, at most once a call (a destination's
HeadBucket is not itself redirected: :func:`_head_bucket_not_redirected`). AWS S3
itself (no endpoint) is left to botocore: its hosts are AWS's, whatever bucket or
region the owner names.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)
from botocore.config import Config
from botocore.httpsession import URLLib3Session
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from lambdas.shared.aws import DeadlineBoundClient, Timeouts
from lambdas.shared.destinations import Destination, DestinationCredentials
from lambdas.shared.endpoint_policy import (
    CheckedEndpoint,
    EndpointPolicy,
    EndpointRefusedError,
    IPAddress,
    normalize_host,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 2
MAX_POOL_CONNECTIONS = 8
# Longest first, chosen per call to fit the invocation's deadline (see
# lambdas.shared.aws): 32 s, 13 s, 6 s, retries included.
REMOTE_TIMEOUTS: tuple[Timeouts, ...] = (
    Timeouts(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, MAX_ATTEMPTS),
    Timeouts(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, 1),
    Timeouts(2, 4, 1),
)
DEFAULT_REGION = "us-east-1"


def remote_config(*, path_style: bool, timeouts: Timeouts = REMOTE_TIMEOUTS[0]) -> Config:
    settings: dict[str, Any] = {
        "connect_timeout": timeouts.connect,
        "read_timeout": timeouts.read,
        "retries": {"mode": "standard", "total_max_attempts": timeouts.attempts},
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "max_pool_connections": MAX_POOL_CONNECTIONS,
        "tcp_keepalive": True,
    }
    if path_style:
        settings["s3"] = {"addressing_style": "path"}
    return Config(**settings)


@functools.cache
def _session() -> boto3.session.Session:
    # One session so the S3 service model is parsed once per process, not per client.
    return boto3.session.Session()


# -- pinned connections ----------------------------------------------------------------

SocketOption = tuple[int, int, int]
# (address, port, connect timeout, source address, socket options) -> a connected socket.
Connector = Callable[
    [IPAddress, int, float | None, tuple[str, int] | None, Sequence[SocketOption]], socket.socket
]


def open_socket(
    address: IPAddress,
    port: int,
    timeout: float | None,
    source_address: tuple[str, int] | None,
    socket_options: Sequence[SocketOption],
) -> socket.socket:
    """A TCP connection to exactly ``address`` (a literal: AI_NUMERICHOST, no lookup)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        str(address), port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        for option in socket_options:
            sock.setsockopt(*option)
        sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class Pins:
    """The addresses each host may be reached at: looked up and checked once, then fixed.

    ``connector`` opens the socket (tests record the address instead of reaching it);
    None: :func:`open_socket`.
    """

    def __init__(self, policy: EndpointPolicy, connector: Connector | None = None) -> None:
        self.policy = policy
        self.connector = connector
        self._hosts: dict[str, tuple[IPAddress, ...] | EndpointRefusedError] = {}
        self._lock = threading.Lock()

    def pin(self, checked: CheckedEndpoint) -> None:
        with self._lock:
            self._hosts[checked.host] = checked.addresses

    def addresses(self, host: str, port: int) -> tuple[IPAddress, ...]:
        key = normalize_host(host)
        with self._lock:
            known = self._hosts.get(key)
        if isinstance(known, EndpointRefusedError):
            raise EndpointRefusedError(known.reason)
        if known is not None:
            return known
        try:
            checked = self.policy.check_host(key, port)
        except EndpointRefusedError as err:
            with self._lock:
                self._hosts[key] = err
            raise
        with self._lock:
            found = self._hosts.setdefault(key, checked)
        if isinstance(found, EndpointRefusedError):
            raise EndpointRefusedError(found.reason)
        return found

    def connect(
        self,
        scheme: str,
        host: str,
        port: int,
        timeout: float | None,
        source_address: tuple[str, int] | None,
        socket_options: Sequence[SocketOption],
    ) -> socket.socket:
        """A socket to one of the host's checked addresses, tried in order."""
        self.policy.check_scheme(scheme)
        connector = self.connector or open_socket
        failure: OSError | None = None
        for address in self.addresses(host, port):
            try:
                return connector(address, port, timeout, source_address, socket_options)
            except OSError as err:
                failure = err
        assert failure is not None  # addresses() never returns an empty tuple
        raise failure


class _PinnedConnection:
    """Mixed into botocore's connections: the socket goes to a checked address, while
    ``host`` (the Host header, TLS SNI and the certificate check) stays the name."""

    pins: Pins
    pinned_scheme: str

    def _new_conn(self) -> socket.socket:
        this = cast("Any", self)
        timeout = this.timeout if isinstance(this.timeout, int | float) else None
        try:
            return self.pins.connect(
                self.pinned_scheme,
                this._dns_host,
                this.port,
                timeout,
                this.source_address,
                this.socket_options or (),
            )
        except TimeoutError as err:
            raise ConnectTimeoutError(
                this, f"Connection to {this.host} timed out. (connect timeout={timeout})"
            ) from err
        except OSError as err:
            raise NewConnectionError(this, f"Failed to establish a new connection: {err}") from err


class PinnedSession(URLLib3Session):
    """botocore's HTTP session, with connections pinned by ``pins`` and no proxies."""

    def __init__(self, pins: Pins, **kwargs: Any) -> None:
        kwargs["proxies"] = {}  # never an environment proxy: it would resolve the host itself
        super().__init__(**kwargs)
        bound = {"pins": pins}
        http = type(
            "PinnedHTTPConnection",
            (_PinnedConnection, AWSHTTPConnection),
            {**bound, "pinned_scheme": "http"},
        )
        https = type(
            "PinnedHTTPSConnection",
            (_PinnedConnection, AWSHTTPSConnection),
            {**bound, "pinned_scheme": "https"},
        )
        classes = {
            "http": type(
                "PinnedHTTPConnectionPool", (AWSHTTPConnectionPool,), {"ConnectionCls": http}
            ),
            "https": type(
                "PinnedHTTPSConnectionPool", (AWSHTTPSConnectionPool,), {"ConnectionCls": https}
            ),
        }
        self._pool_classes_by_scheme = classes
        cast("Any", self)._manager.pool_classes_by_scheme = classes


def pin_client(client: Any, pins: Pins, timeouts: Timeouts) -> Any:
    """Replace the client's HTTP session with a pinned one of the same settings.

    botocore offers no public way to choose a client's HTTP session; the client's
    endpoint holds it (``client._endpoint.http_session``); the tests in
    tests/integration/test_backup_endpoint_policy.py fail if requests stop going there.
    """
    endpoint = client._endpoint
    original = endpoint.http_session
    endpoint.http_session = PinnedSession(
        pins,
        verify=getattr(original, "_verify", True),
        timeout=(timeouts.connect, timeouts.read),
        max_pool_connections=MAX_POOL_CONNECTIONS,
        socket_options=getattr(original, "_socket_options", None),
    )
    original.close()
    return client


def _head_bucket_not_redirected(context: dict[str, Any], **_: Any) -> None:
    """A destination's HeadBucket is never region-redirected. botocore's S3 region
    redirect asks HeadBucket where a bucket lives when a reply is a 301/302/307 without
    a region; a server that answers HeadBucket with one too would be asked again and
    again (unbounded recursion, a request each time). Marked as already redirected,
    that HeadBucket's redirect is an error like any other, and the call fails once."""
    redirect = context.get("s3_redirect")
    if isinstance(redirect, dict):
        redirect["redirected"] = True


def check_endpoint(destination: Destination, policy: EndpointPolicy) -> CheckedEndpoint | None:
    """The destination's endpoint, checked now; None for AWS S3 (no endpoint)."""
    if not destination.endpoint_url:
        return None
    return policy.check_url(destination.endpoint_url)


def remote_client(
    destination: Destination,
    credentials: DestinationCredentials,
    policy: EndpointPolicy,
    *,
    connector: Connector | None = None,
) -> S3Client:
    """An S3 client for the destination, signed with the owner's own credentials only;
    each call gets timeouts that fit the time left in the invocation.

    The endpoint is checked here, before anything is sent: EndpointRefusedError (a
    PermanentError) when the policy refuses it, EndpointUnresolvedError (transient)
    when its host does not resolve now.
    """
    checked = check_endpoint(destination, policy)
    pins: Pins | None = None
    if checked is not None:
        pins = Pins(policy, connector)
        pins.pin(checked)

    @functools.cache
    def make(timeouts: Timeouts) -> Any:
        client = _session().client(
            "s3",
            endpoint_url=destination.endpoint_url or None,
            region_name=destination.region or DEFAULT_REGION,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key.get_secret_value(),
            # Explicit keys with no token: an ambient session token must not leak in.
            aws_session_token=None,
            config=remote_config(path_style=destination.path_style, timeouts=timeouts),
        )
        if pins is None:
            return client
        client.meta.events.register("before-call.s3.HeadBucket", _head_bucket_not_redirected)
        return pin_client(client, pins, timeouts)

    return cast("S3Client", DeadlineBoundClient("backup destination", make, REMOTE_TIMEOUTS))
