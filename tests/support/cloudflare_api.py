"""A real HTTP server on loopback implementing the Cloudflare for SaaS endpoints we use.

``GET /zones/{zone}/custom_hostnames?hostname=H``, ``POST /zones/{zone}/custom_hostnames``
and ``PATCH /zones/{zone}/custom_hostnames/{id}``, with Cloudflare's response
envelope (``success``, ``errors``, ``result``). A test scripts it:

- ``statuses``: the status each create or update moves a hostname to, in turn
  (the last one sticks), e.g. ``["pending", "active"]``;
- ``fail_next``: HTTP status codes to answer the next requests with (5xx, 429, ...);
- a request without ``Authorization: Bearer <token>`` gets a 403 like Cloudflare's.

``requests`` records (method, path) of every request, for assertions.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# serve_forever's poll: shutdown() waits up to one (the default 0.5 s, each server, each test).
POLL_SECONDS = 0.05

LOOPBACK = "127.0.0.1"
API_PREFIX = "/client/v4"


class FakeCloudflare:
    def __init__(self, *, zone_id: str = "zone-0123", token: str = "cf-test-token") -> None:
        self.zone_id = zone_id
        self.token = token
        self.statuses: list[str] = ["active"]
        self.fail_next: list[int] = []
        self.hostnames: dict[str, dict[str, Any]] = {}  # id -> custom hostname object
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_base(self) -> str:
        assert self._server is not None
        return f"http://{LOOPBACK}:{self._server.server_address[1]}{API_PREFIX}"

    # -- behaviour ----------------------------------------------------------------------
    def _next_status(self) -> str:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def _object(self, hostname: str, status: str, object_id: str | None = None) -> dict[str, Any]:
        return {
            "id": object_id or str(uuid.uuid4()),
            "hostname": hostname,
            "status": status,
            "ssl": {"status": "active" if status == "active" else "pending_validation"},
            "verification_errors": [] if status == "active" else ["custom hostname not yet seen"],
        }

    def handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        parsed = urllib.parse.urlsplit(raw_path)
        with self._lock:
            self.requests.append((method, parsed.path))
            self.authorizations.append(str(headers.get("Authorization", "")))
            if self.fail_next:
                code = self.fail_next.pop(0)
                return code, _error(10500, "upstream")
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 403, _error(10000, "Authentication error")
            prefix = f"{API_PREFIX}/zones/{self.zone_id}/custom_hostnames"
            if not parsed.path.startswith(prefix):
                return 404, _error(7003, "Could not route")
            rest = parsed.path[len(prefix) :].strip("/")
            if method == "GET" and not rest:
                wanted = urllib.parse.parse_qs(parsed.query).get("hostname", [""])[0]
                found = [h for h in self.hostnames.values() if h["hostname"] == wanted]
                return 200, _envelope(found)
            if method == "POST" and not rest:
                request = json.loads(body or b"{}")
                hostname = str(request.get("hostname", ""))
                if any(h["hostname"] == hostname for h in self.hostnames.values()):
                    return 409, _error(1406, "Duplicate custom hostname found.")
                item = self._object(hostname, self._next_status())
                self.hostnames[item["id"]] = item
                return 201, _envelope(item)
            if method == "PATCH" and rest in self.hostnames:
                current = self.hostnames[rest]
                item = self._object(current["hostname"], self._next_status(), rest)
                self.hostnames[rest] = item
                return 200, _envelope(item)
            return 404, _error(1436, "not found")

    # -- the server ---------------------------------------------------------------------
    def start(self) -> FakeCloudflare:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, document = fake.handle(self.command, self.path, self.headers, body)
                payload = json.dumps(document).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output clean

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeCloudflare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _envelope(result: Any, *, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"success": not errors, "errors": errors or [], "messages": [], "result": result}


def _error(code: int, message: str) -> dict[str, Any]:
    return _envelope(None, errors=[{"code": code, "message": message}])
