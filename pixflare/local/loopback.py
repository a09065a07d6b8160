"""The local stack's HTTP servers (the Lambda Runtime API, the AWS fault proxy, the
HTTP API): a threading server on 127.0.0.1, on a free port, served from a daemon
thread, and the one request-body reader they share."""

from __future__ import annotations

import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POLL_INTERVAL_SECONDS = 0.1  # bounds how long shutdown() waits for the serving loop
_LINE_LIMIT = 65537  # a chunk-size or trailer line longer than this is not HTTP


class BodyTooLargeError(Exception):
    """The request's body is over the reader's limit (nothing more of it was read)."""


def declared_length(handler: BaseHTTPRequestHandler) -> int:
    """The request's Content-Length (0 when absent or not a number)."""
    try:
        return max(0, int(handler.headers.get("Content-Length") or 0))
    except ValueError:
        return 0


def read_body(handler: BaseHTTPRequestHandler, *, limit: int | None = None) -> bytes:
    """The request's body: Content-Length bytes, or an HTTP/1.1 chunked body de-framed
    (trailers dropped; what is inside, such as aws-chunked, is left as it is).
    BodyTooLargeError past ``limit``. Always read whole, so a kept-alive connection
    stays in step."""
    if "chunked" not in (handler.headers.get("Transfer-Encoding") or "").lower():
        length = declared_length(handler)
        if limit is not None and length > limit:
            raise BodyTooLargeError
        return handler.rfile.read(length) if length else b""
    chunks: list[bytes] = []
    total = 0
    while True:
        size = int(handler.rfile.readline(_LINE_LIMIT).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while handler.rfile.readline(_LINE_LIMIT) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            return b"".join(chunks)
        total += size
        if limit is not None and total > limit:
            raise BodyTooLargeError
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline(_LINE_LIMIT)  # the CRLF after the chunk


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS lookup); not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller that hung up (a killed function, a client past its read timeout)
        # resets its connection: that is how these servers are used, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def serve_in_background(self, name: str) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_SECONDS},
            name=f"{name}-{self.server_port}",
            daemon=True,
        )
        thread.start()
        return thread
