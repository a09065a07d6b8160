"""The Lambda Runtime API (2018-06-01) for one execution environment, on 127.0.0.1.

The Runtime Interface Client in the function's process long-polls
``GET /runtime/invocation/next`` and posts the outcome back. One :class:`RuntimeAPI`
serves exactly one process and holds at most one invocation at a time, as Lambda's
own endpoint (RAPID) does for one sandbox.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from pixflare.local.loopback import LoopbackHTTPServer, read_body

PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# Lambda's synchronous response payload limit, with RAPID's own wording.
MAX_RESPONSE_BYTES = 6291556
# How often a blocked /next re-checks that its environment is still open.
NEXT_RECHECK_SECONDS = 0.5

_INVOCATION_PATH = re.compile(rf"^{PREFIX}/invocation/([^/]+)/(response|error)$")


@dataclass
class Outcome:
    """What the runtime posted for an invocation."""

    kind: str  # "response" or "error"
    body: bytes
    content_type: str
    error_type: str | None  # the Lambda-Runtime-Function-Error-Type header
    at: float  # time.monotonic() when it arrived


@dataclass
class PendingInvocation:
    """An event waiting for (then handed to) the environment's next /next."""

    request_id: str
    body: bytes
    timeout_seconds: float
    function_arn: str
    trace_id: str
    handed_at: float | None = None  # time.monotonic() when /next answered
    deadline_ms: int | None = None  # epoch ms sent in Lambda-Runtime-Deadline-Ms
    outcome: Outcome | None = None


@dataclass
class InitError:
    error_type: str
    body: bytes
    at: float


class RuntimeAPI:
    """State shared by the HTTP handlers and the invoking thread, guarded by ``cond``."""

    def __init__(self, on_handed: Callable[[PendingInvocation], None] | None = None) -> None:
        self.cond = threading.Condition()
        self.on_handed = on_handed  # called with the PendingInvocation before /next answers
        self.pending: PendingInvocation | None = None
        self.first_next_at: float | None = None
        self.init_error: InitError | None = None
        self.closed = False
        self._server = _Server(self)
        self._thread = self._server.serve_in_background("runtime-api")

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API."""
        return f"{self._server.server_name}:{self._server.server_port}"

    def submit(self, invocation: PendingInvocation) -> None:
        """The next GET /next (already waiting or still to come) receives this event."""
        with self.cond:
            self.pending = invocation
            self.cond.notify_all()

    def finish(self) -> None:
        """The invocation is over (answered, timed out or abandoned): later posts get 400."""
        with self.cond:
            self.pending = None
            self.cond.notify_all()

    def close(self) -> None:
        """Stop serving; a blocked /next is dropped without an answer. Bounded by the
        server's poll interval and NEXT_RECHECK_SECONDS; handler threads are daemons."""
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


class _Server(LoopbackHTTPServer):
    def __init__(self, api: RuntimeAPI) -> None:
        self.api = api
        super().__init__(_Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle on, the second would wait
    # for the runtime's delayed ACK (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged; the environment logs START/END/REPORT instead."""

    # -- plumbing -----------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not headers or "Content-Type" not in headers:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_error(self, status: int, error_type: str, message: str) -> None:
        body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
        self._send(status, body)

    def _accepted(self) -> None:
        self._send(202, b'{"status":"OK"}\n')

    # -- endpoints ----------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path == f"{PREFIX}/invocation/next":
            self._next()
        else:
            self._send_error(404, "InvalidRequest", f"unknown path {self.path}")

    def do_POST(self) -> None:
        body = read_body(self)  # always, so a kept-alive connection stays in step
        if self.path == f"{PREFIX}/init/error":
            self._init_error(body)
            return
        match = _INVOCATION_PATH.match(self.path)
        if match is None:
            self._send_error(404, "InvalidRequest", f"unknown path {self.path}")
            return
        self._outcome(match.group(1), match.group(2), body)

    def _next(self) -> None:
        api = self.server.api
        with api.cond:
            if api.first_next_at is None:
                # The runtime imported the handler: init is over.
                api.first_next_at = time.monotonic()
                api.cond.notify_all()
            while not api.closed and (api.pending is None or api.pending.handed_at is not None):
                api.cond.wait(NEXT_RECHECK_SECONDS)
            if api.closed:
                # Nothing to hand over, ever: drop the connection without an answer.
                self.close_connection = True
                return
            invocation = api.pending
            assert invocation is not None
            invocation.handed_at = time.monotonic()
            invocation.deadline_ms = int(
                (time.time() + invocation.timeout_seconds) * 1000
            )  # what context.get_remaining_time_in_millis() counts down to
            api.cond.notify_all()
        if api.on_handed is not None:
            api.on_handed(invocation)
        self._send(
            200,
            invocation.body,
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
            },
        )

    def _outcome(self, request_id: str, kind: str, body: bytes) -> None:
        api = self.server.api
        error_type = self.headers.get(ERROR_TYPE_HEADER)
        content_type = self.headers.get("Content-Type", "application/json")
        too_large = kind == "response" and len(body) > MAX_RESPONSE_BYTES
        with api.cond:
            invocation = api.pending
            if (
                invocation is None
                or invocation.request_id != request_id
                or invocation.handed_at is None
            ):
                status = 400
            elif invocation.outcome is not None:
                status = 403
            else:
                status = 413 if too_large else 202
                if too_large:
                    message = (
                        f"Response payload size ({len(body)} bytes) exceeded maximum "
                        f"allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                    )
                    kind, error_type = "error", "Function.ResponseSizeTooLarge"
                    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
                invocation.outcome = Outcome(
                    kind=kind,
                    body=body,
                    content_type=content_type,
                    error_type=error_type,
                    at=time.monotonic(),
                )
                api.cond.notify_all()
        if status == 202:
            self._accepted()
        elif status == 400:
            self._send_error(400, "InvalidRequestID", "Invalid request ID")
        elif status == 403:
            self._send_error(403, "InvalidStateTransition", "State transition is not allowed")
        else:
            self._send_error(413, "RequestEntityTooLarge", "Exceeded maximum allowed payload size")

    def _init_error(self, body: bytes) -> None:
        api = self.server.api
        error_type = self.headers.get(ERROR_TYPE_HEADER) or "Runtime.Unknown"
        with api.cond:
            allowed = api.first_next_at is None and api.init_error is None
            if allowed:
                api.init_error = InitError(error_type=error_type, body=body, at=time.monotonic())
                api.cond.notify_all()
        if allowed:
            self._accepted()
        else:
            self._send_error(403, "InvalidStateTransition", "State transition is not allowed")
