"""An HTTP proxy in front of an AWS endpoint (the moto server) that injects faults.

The Lambda functions of the local stack run in their own processes and find AWS
through AWS_ENDPOINT_URL; pointing that at this proxy puts a real part between them
and moto. Every request is forwarded as it came (method, path and query, headers,
body) and the response relayed as it came back, except the ones a :class:`FaultRule`
(for example the tests' ``FaultPlan``) picks: those get a real AWS error response
in the service's own protocol, a response that never comes ("timeout") or a closed
connection ("connect"). The SDK's own retries and error parsing run for real, so a
plan's ``injected`` counts refused *attempts*, not calls.

    with AwsFaultProxy(moto_endpoint) as proxy, proxy.faults(FaultPlan(("s3.GetObject",))):
        boto3.client("s3", endpoint_url=proxy.endpoint, ...)

Calls are named like botocore's operations (``s3.GetObject``, ``dynamodb.PutItem``):
JSON protocols from the X-Amz-Target header, the service from the SigV4 credential
scope, S3 (path-style, as against moto) from the method, path and query.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from pixflare.local.loopback import LoopbackHTTPServer, read_body


class FaultRule(Protocol):
    """Which calls fail and how; ``kind`` is ``(code, status, message)``, "timeout" or
    "connect"."""

    kind: Any

    def matches(self, service: str, operation: str) -> bool: ...

    def decide(self, name: str, params: dict[str, Any]) -> bool: ...


FaultPlan = TypeVar("FaultPlan", bound=FaultRule)

# A "timeout" fault holds the response this long at most (or until the proxy closes):
# longer than any read timeout of the project's clients (5 s), bounded all the same.
HOLD_SECONDS = 15.0
# How long a request waits for the upstream to be set (see AwsFaultProxy.upstream).
UPSTREAM_WAIT_SECONDS = 30.0
UPSTREAM_TIMEOUT_SECONDS = 60.0
CLOSE_TIMEOUT_SECONDS = 5.0

# Hop-by-hop headers (RFC 9110 7.6.1) and the framing the proxy sets itself.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}

# X-Amz-Target prefixes, for a request whose credential scope does not name the service.
_TARGET_SERVICES = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
    "AmazonSQS": "sqs",
    "TrentService": "kms",
    "secretsmanager": "secretsmanager",
    "RekognitionService": "rekognition",
}


@dataclass(frozen=True)
class Call:
    """One request as the proxy sees it."""

    service: str
    operation: str
    method: str
    url_path: str  # without the query

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"

    def params(self) -> dict[str, Any]:
        """What FaultPlan.decide and its ``only_if`` get."""
        return {
            "url_path": self.url_path,
            "method": self.method,
            "service": self.service,
            "operation": self.operation,
        }


def identify(method: str, target: str, headers: Any, body: bytes = b"") -> Call:
    """Name a request like botocore does: ``service.Operation``.

    ``target`` is the request target (path and query); ``headers`` a mapping or an
    email.message.Message (names in any case).
    """
    headers = {name.lower(): value for name, value in headers.items()}
    parts = urlsplit(target)
    path, query = parts.path or "/", parts.query
    service = _credential_service(headers.get("authorization") or "", query)
    amz_target = headers.get("x-amz-target")
    if amz_target:
        prefix, _, operation = amz_target.rpartition(".")
        service = service or _TARGET_SERVICES.get(prefix, prefix.lower())
        return Call(service, operation or "Unknown", method, path)
    content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded" and service != "s3":
        # The query protocol (SQS before JSON, STS, ...): Action=... in the form.
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        if action:
            return Call(service or "unknown", action, method, path)
    if service in ("", "s3"):
        return Call("s3", _s3_operation(method, path, query, headers), method, path)
    return Call(service, "Unknown", method, path)


def _credential_service(authorization: str, query: str) -> str:
    """The service in a SigV4 credential scope: ``Credential=AK/DATE/REGION/SERVICE/...``."""
    credential = ""
    if "Credential=" in authorization:
        credential = authorization.split("Credential=", 1)[1].split(",", 1)[0]
    elif query:  # a presigned URL
        credential = parse_qs(query).get("X-Amz-Credential", [""])[0]
    scope = credential.strip().split("/")
    return scope[3].lower() if len(scope) >= 5 else ""


def _s3_operation(method: str, path: str, query: str, headers: dict[str, str]) -> str:
    """The S3 operation of a path-style REST request (``/bucket`` or ``/bucket/key``)."""
    q = parse_qs(query, keep_blank_values=True)
    bucket, _, key = path.lstrip("/").partition("/")
    copy = headers.get("x-amz-copy-source") is not None
    if not bucket:
        return "ListBuckets" if method == "GET" else "Unknown"
    if not key:
        bucket_operations = {
            ("GET", "list-type"): "ListObjectsV2",
            ("GET", "uploads"): "ListMultipartUploads",
            ("GET", "versions"): "ListObjectVersions",
            ("GET", "location"): "GetBucketLocation",
            ("POST", "delete"): "DeleteObjects",
        }
        for (verb, flag), operation in bucket_operations.items():
            if method == verb and flag in q:
                return operation
        if q:  # some other bucket subresource (?policy, ?cors, ...)
            return "Unknown"
        return {
            "GET": "ListObjects",
            "HEAD": "HeadBucket",
            "PUT": "CreateBucket",
            "DELETE": "DeleteBucket",
        }.get(method, "Unknown")
    multipart = "uploadId" in q
    if method == "PUT":
        if multipart and "partNumber" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        if "tagging" in q:
            return "PutObjectTagging"
        if q.keys() - {"x-id"}:
            return "Unknown"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        if multipart:
            return "ListParts"
        if "tagging" in q:
            return "GetObjectTagging"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if multipart else "DeleteObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if multipart:
            return "CompleteMultipartUpload"
    return "Unknown"


def error_response(
    call: Call, code: str, status: int, message: str
) -> tuple[int, dict[str, str], bytes]:
    """A real AWS error response in the call's protocol: (status, headers, body)."""
    request_id = uuid.uuid4().hex.upper()
    if call.service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = {"Content-Type": "application/xml", "x-amz-request-id": request_id}
        # A HEAD response has no body: the SDK names the error by the status alone.
        return status, headers, b"" if call.method == "HEAD" else body
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": request_id}
    if call.service == "sqs":
        # SQS speaks JSON but keeps its query-protocol error codes in this header.
        headers["x-amzn-query-error"] = f"{code};{'Receiver' if status >= 500 else 'Sender'}"
    return status, headers, json.dumps({"__type": code, "message": message}).encode()


class _Server(LoopbackHTTPServer):
    proxy: AwsFaultProxy


class AwsFaultProxy:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) forwarding to ``upstream``.

    ``upstream`` may be set after the proxy starts (the local stack's moto endpoint
    exists only once the stack runs, and the stack needs this proxy's endpoint to
    start): until it is set, requests wait for it (bounded).

    Counters, by call name: ``calls`` (every request, injected or not),
    ``injected`` (faults of every plan), ``upstream_5xx`` (5xx responses from the
    upstream), ``upstream_unreachable`` (no response from it; answered 502) and
    ``client_gone`` (the caller left before its response was written, as a caller
    whose read timeout expired does).
    """

    def __init__(self, upstream: str | None = None) -> None:
        self._lock = threading.Lock()
        self._upstream_set = threading.Event()
        self._upstream: tuple[str, int] | None = None
        self._upstream_url: str | None = None
        self._closing = threading.Event()
        self._plans: list[FaultRule] = []
        self._connections: set[socket.socket] = set()
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.upstream_5xx: Counter[str] = Counter()
        self.upstream_unreachable: Counter[str] = Counter()
        self.client_gone: Counter[str] = Counter()
        if upstream is not None:
            self.upstream = upstream
        self._server = _Server(_Handler)
        self._server.proxy = self
        self.port = self._server.server_port
        self._thread = self._server.serve_in_background("aws-fault-proxy")

    # -- configuration ------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upstream(self) -> str | None:
        return self._upstream_url

    @upstream.setter
    def upstream(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {url!r}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._upstream_url = url
        self._upstream_set.set()

    @contextmanager
    def faults(self, plan: FaultPlan) -> Iterator[FaultPlan]:
        """The plan decides about every matching request for the duration of the block.
        Plans are asked in the order they were entered; the first that decides wins."""
        if plan.kind not in ("timeout", "connect") and not isinstance(plan.kind, tuple):
            raise ValueError(f"the proxy cannot inject {plan.kind!r}")
        with self._lock:
            self._plans.append(plan)
        try:
            yield plan
        finally:
            with self._lock:
                self._plans.remove(plan)

    def failed_attempts(self) -> Counter[str]:
        """Every attempt that did not get a good answer, as ``"name cause"``: what the
        SDK saw fail (and retried, while it had attempts left)."""
        failed: Counter[str] = Counter()
        with self._lock:
            for name, count in self.injected.items():
                failed[f"{name} injected"] += count
            for name, count in self.upstream_5xx.items():
                failed[f"{name} upstream 5xx"] += count
            for name, count in self.upstream_unreachable.items():
                failed[f"{name} upstream unreachable"] += count
            for name, count in self.client_gone.items():
                failed[f"{name} caller gone"] += count
        return failed

    # -- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> AwsFaultProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, wake held responses and drop open connections (bounded)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._upstream_set.set()  # a request still waiting for an upstream gives up
        self._server.shutdown()
        self._thread.join(CLOSE_TIMEOUT_SECONDS)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    # -- used by the handler ------------------------------------------------------------
    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _count(self, counter: Counter[str], name: str) -> None:
        with self._lock:
            counter[name] += 1

    def _fault_for(self, call: Call) -> FaultRule | None:
        with self._lock:
            self.calls[call.name] += 1
            plans = list(self._plans)
        for plan in plans:
            if plan.matches(call.service, call.operation) and plan.decide(call.name, call.params()):
                self._count(self.injected, call.name)
                return plan
        return None

    def _wait_for_upstream(self) -> tuple[str, int] | None:
        self._upstream_set.wait(UPSTREAM_WAIT_SECONDS)
        return None if self._closing.is_set() else self._upstream


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pools expect
    server: _Server
    _upstream_connection: http.client.HTTPConnection | None = None

    # -- plumbing -------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, False)
            if self._upstream_connection is not None:
                self._upstream_connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr would drown the test's output

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- one request ----------------------------------------------------------------
    def _proxy(self) -> None:
        proxy = self.server.proxy
        body = read_body(self)
        call = identify(self.command, self.path, self.headers, body)
        plan = proxy._fault_for(call)
        if plan is not None:
            self._inject(plan, call)
            return
        upstream = proxy._wait_for_upstream()
        if upstream is None:
            self._respond(502, {"Content-Type": "text/plain"}, b"no upstream", call)
            return
        try:
            status, headers, payload = self._forward(upstream, body)
        except (OSError, http.client.HTTPException) as err:
            proxy._count(proxy.upstream_unreachable, call.name)
            message = f"upstream {upstream[0]}:{upstream[1]}: {err}".encode()
            self._respond(502, {"Content-Type": "text/plain"}, message, call)
            return
        if status >= 500:
            proxy._count(proxy.upstream_5xx, call.name)
        self._respond(status, headers, payload, call)

    def _forward(
        self, upstream: tuple[str, int], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        # A kept-alive upstream connection may have been closed by the server since its
        # last use; a fresh one is then tried once (nothing of this request was answered).
        for fresh in (False, True):
            reused = self._upstream_connection is not None and not fresh
            if not reused:
                if self._upstream_connection is not None:
                    self._upstream_connection.close()
                self._upstream_connection = http.client.HTTPConnection(
                    *upstream, timeout=UPSTREAM_TIMEOUT_SECONDS
                )
            connection = self._upstream_connection
            assert connection is not None
            try:
                # skip_host: the Host header goes through as the client sent it.
                connection.putrequest(
                    self.command, self.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in headers:
                    connection.putheader(name, value)
                if body or self.command in ("PUT", "POST", "PATCH"):
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body or None)
                response = connection.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                self._upstream_connection = None
                if reused:
                    continue
                raise
            except BaseException:
                connection.close()
                self._upstream_connection = None
                raise
            if response.will_close:
                connection.close()
                self._upstream_connection = None
            return response.status, response.getheaders(), payload
        raise http.client.HTTPException("unreachable")  # pragma: no cover

    def _inject(self, plan: FaultRule, call: Call) -> None:
        if plan.kind == "timeout":
            # Longer than the caller's read timeout (it gives up and retries on a new
            # connection); then the connection is dropped without an answer.
            self.server.proxy._closing.wait(HOLD_SECONDS)
            self._drop()
            return
        if plan.kind == "connect":
            self._drop()
            return
        assert isinstance(plan.kind, tuple)
        code, status, message = plan.kind
        status, headers, payload = error_response(call, code, status, f"injected: {message}")
        self._respond(status, list(headers.items()), payload, call)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _respond(
        self,
        status: int,
        headers: list[tuple[str, str]] | dict[str, str],
        payload: bytes,
        call: Call,
    ) -> None:
        items = headers.items() if isinstance(headers, dict) else headers
        try:
            self.send_response_only(status)
            length = None
            for name, value in items:
                lowered = name.lower()
                if lowered == "content-length":
                    length = value
                if lowered in _HOP_BY_HOP:
                    continue
                self.send_header(name, value)
            if self.command == "HEAD":
                # No body; the length is the object's, as the upstream said.
                self.send_header("Content-Length", length if length is not None else "0")
            elif status in (204, 304) or 100 <= status < 200:
                pass
            else:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD" and status not in (204, 304):
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.server.proxy._count(self.server.proxy.client_gone, call.name)
            self.close_connection = True
