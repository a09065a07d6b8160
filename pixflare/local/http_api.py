"""An HTTP API (API Gateway v2, payload format 2.0) of the template, served on loopback.

Each request is matched to the template's routes as API Gateway matches them (most
specific first: literal segments over ``{param}`` over a greedy ``{proxy+}``, an exact
method over ``ANY``, ``$default`` last), turned into the payload-format-2.0 event AWS
sends, and run through the function's own execution environments
(:meth:`pixflare.local.functions.LocalFunction.invoke`); the function's 2.0 response
becomes the HTTP reply. What API Gateway itself answers is answered here too:

- no route: 404 ``{"message":"Not Found"}``; a body over 10 MB: 413;
- a function error, timeout or unusable response: 500 ``{"message":"Internal Server
  Error"}``; an integration past its ``TimeoutInMillis``: 503;
- the stage's route throttling (``DefaultRouteSettings`` / ``RouteSettings``: rate and
  burst, a token bucket per route): 429 ``{"message":"Too Many Requests"}``;
- with a ``CorsConfiguration``: preflight ``OPTIONS`` answered (204) for the allowed
  origins, ``Access-Control-Allow-Origin`` added to their responses, the integration's
  own CORS headers dropped; nothing for other origins.

Locally the API also serves the page (``pixflare/local/web/index.html``) at ``GET /``
(and ``/index.html``) unless a route claims that path, so the page is same-origin
with the API. ``requestContext.domainName`` is the Host the request came to (as with a
custom domain), so a function building absolute URLs gets the loopback one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from pixflare.local.environments import Invocation
from pixflare.local.loopback import (
    BodyTooLargeError,
    LoopbackHTTPServer,
    declared_length,
    read_body,
)
from pixflare.local.template import (
    ACCOUNT_ID,
    DEFAULT_STAGE,
    CorsSpec,
    FunctionSpec,
    HttpApiSpec,
    RouteSpec,
    ThrottleSpec,
)

PAGE = Path(__file__).with_name("web") / "index.html"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit (HTTP APIs)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Request bodies of these types reach the function as text; anything else (or no
# Content-Type) is base64-encoded with isBase64Encoded true, as HTTP APIs do.
_TEXT_TYPES = re.compile(
    r"^(text/[^;]+|application/(json|javascript|xml|[^;]+\+json|[^;]+\+xml))\s*(;|$)", re.I
)
_PARAM = re.compile(r"^\{([^{}+]+)\}$")
_GREEDY = re.compile(r"^\{([^{}+]+)\+\}$")


# -- requests and responses, without sockets ---------------------------------------
@dataclass
class ApiRequest:
    method: str
    target: str  # the request line's target: raw path and query, as received
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


@dataclass
class ApiResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def message(status: int, text: str) -> ApiResponse:
    """API Gateway's own answers: ``{"message": text}``."""
    body = json.dumps({"message": text}, separators=(",", ":")).encode()
    return ApiResponse(status, [("content-type", "application/json")], body)


class Function(Protocol):
    """What the API needs of a function (pixflare.local.functions.LocalFunction)."""

    spec: FunctionSpec

    def invoke(self, event: Any) -> Invocation: ...


# -- routes ----------------------------------------------------------------------------
def _segments(path: str) -> list[str]:
    return path.split("/")[1:] if path.startswith("/") else path.split("/")


def match_path(template: str, path: str) -> dict[str, str] | None:
    """The path parameters when ``path`` (percent-encoded, as received) fits the route's
    path template, else None. ``{name}`` is one non-empty segment; ``{name+}``, last, is
    the rest (one or more segments)."""
    wanted, given = _segments(template), _segments(path)
    parameters: dict[str, str] = {}
    for index, part in enumerate(wanted):
        greedy = _GREEDY.match(part)
        if greedy and index == len(wanted) - 1:
            rest = given[index:]
            if not rest or not "/".join(rest):
                return None
            parameters[greedy.group(1)] = unquote("/".join(rest))
            return parameters
        if index >= len(given):
            return None
        param = _PARAM.match(part)
        if param:
            if not given[index]:
                return None
            parameters[param.group(1)] = unquote(given[index])
        elif part != given[index]:
            return None
    return parameters if len(given) == len(wanted) else None


def _specificity(route: RouteSpec) -> tuple[int, tuple[int, ...], int]:
    path = route.path or ""
    segments = tuple(
        0 if _GREEDY.match(part) else 1 if _PARAM.match(part) else 2 for part in _segments(path)
    )
    return (0 if 0 in segments else 1, segments, 0 if route.method == "ANY" else 1)


def match_route(
    routes: Iterable[RouteSpec], method: str, path: str
) -> tuple[RouteSpec, dict[str, str]] | None:
    """The route API Gateway picks for a request: the most specific match, $default last."""
    candidates = []
    default = None
    for route in routes:
        if route.path is None:
            default = route
            continue
        if route.method not in ("ANY", method):
            continue
        parameters = match_path(route.path, path)
        if parameters is not None:
            candidates.append((_specificity(route), route, parameters))
    if candidates:
        _, route, parameters = max(candidates, key=lambda c: c[0])
        return route, parameters
    if default is not None:
        return default, {}
    return None


# -- CORS --------------------------------------------------------------------------
def origin_allowed(cors: CorsSpec, origin: str | None) -> bool:
    if not origin:
        return False
    return "*" in cors.allow_origins or origin in cors.allow_origins


def _allow_origin(cors: CorsSpec, origin: str) -> str:
    return "*" if "*" in cors.allow_origins and not cors.allow_credentials else origin


def preflight_headers(cors: CorsSpec, origin: str | None) -> list[tuple[str, str]]:
    """The headers of API Gateway's answer to a preflight (empty for another origin)."""
    if origin is None or not origin_allowed(cors, origin):
        return []
    headers = [("access-control-allow-origin", _allow_origin(cors, origin))]
    if cors.allow_methods:
        headers.append(("access-control-allow-methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        headers.append(("access-control-allow-headers", ",".join(cors.allow_headers)))
    if cors.max_age_seconds is not None:
        headers.append(("access-control-max-age", str(cors.max_age_seconds)))
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    return headers


def cors_response_headers(cors: CorsSpec, origin: str | None) -> list[tuple[str, str]]:
    """What API Gateway adds to an allowed origin's (non-preflight) response."""
    if origin is None or not origin_allowed(cors, origin):
        return []
    headers = [("access-control-allow-origin", _allow_origin(cors, origin))]
    if cors.expose_headers:
        headers.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    return headers


# -- throttling ----------------------------------------------------------------------
class TokenBucket:
    """API Gateway's throttle: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = max(0.0, rate)
        self.capacity = max(0, burst)
        self.clock = clock
        self.tokens = float(self.capacity)
        self.updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            elapsed = max(0.0, now - self.updated)
            self.updated = now
            self.tokens = min(float(self.capacity), self.tokens + elapsed * self.rate)
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


# -- the 2.0 event and response ------------------------------------------------------
def _request_time(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return (
        f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} +0000"
    )


def request_id() -> str:
    """An id shaped like API Gateway's (``JKJaXmPLvHcESHA=``)."""
    return base64.b64encode(secrets.token_bytes(11)).decode()


def is_text(content_type: str | None) -> bool:
    return bool(content_type) and bool(_TEXT_TYPES.match(str(content_type).strip()))


def build_event(
    request: ApiRequest,
    *,
    route_key: str,
    path_parameters: Mapping[str, str],
    api_id: str,
    stage: str = DEFAULT_STAGE,
    account_id: str = ACCOUNT_ID,
    request_id: str,
    now: float,
    server_port: int | None = None,
) -> dict[str, Any]:
    """The payload-format-2.0 event API Gateway sends for ``request``."""
    raw_path, _, raw_query = request.target.partition("?")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    )
    if server_port is not None:
        headers["x-forwarded-port"] = str(server_port)
    headers["x-forwarded-proto"] = "http"
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now):08x}-{secrets.token_hex(12)}")
    if request.body and "content-length" not in headers:
        headers["content-length"] = str(len(request.body))
    domain = headers.get("host", "").rsplit(":", 1)[0] if headers.get("host") else ""
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": _request_time(now),
        "timeEpoch": int(now * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        text = None
        if is_text(headers.get("content-type")):
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is not None:
            event["body"] = text
            event["isBase64Encoded"] = False
        else:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


class UnusableResponseError(ValueError):
    """The function's answer is not a 2.0 response API Gateway can send (a 500)."""


def http_response(response: Any) -> ApiResponse:
    """The HTTP reply for a function's payload-format-2.0 response.

    With ``statusCode``: that status, ``headers``, each of ``cookies`` as a set-cookie
    header, ``body`` (base64-decoded when ``isBase64Encoded``). Without it (any other
    JSON value, a string included), API Gateway infers a 200 with content-type
    application/json and the value as the body (a string as is, anything else as JSON).
    """
    if not isinstance(response, dict) or "statusCode" not in response:
        body = response if isinstance(response, str) else json.dumps(response)
        return ApiResponse(200, [("content-type", "application/json")], body.encode())
    status: Any = response["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise UnusableResponseError(f"statusCode {status!r}")
    headers: list[tuple[str, str]] = []
    raw_headers = response.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise UnusableResponseError("headers is not an object")
    for name, value in raw_headers.items():
        if isinstance(value, bool):
            value = str(value).lower()
        headers.append((str(name).lower(), str(value)))
    cookies = response.get("cookies") or []
    if not isinstance(cookies, list):
        raise UnusableResponseError("cookies is not a list")
    headers.extend(("set-cookie", str(cookie)) for cookie in cookies)
    raw_body = response.get("body")
    if raw_body is None:
        data = b""
    elif not isinstance(raw_body, str):
        raise UnusableResponseError("body is not a string")
    elif response.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError) as err:
            raise UnusableResponseError("body is not base64") from err
    else:
        data = raw_body.encode("utf-8")
    if not any(name == "content-type" for name, _ in headers) and data:
        headers.append(("content-type", "text/plain; charset=utf-8"))
    return ApiResponse(status, headers, data)


# -- the API ---------------------------------------------------------------------------
class HttpApi:
    """One HTTP API: routes, CORS and throttling from its :class:`HttpApiSpec`, its
    functions run through their execution environments. Socket-free: :meth:`handle`."""

    def __init__(
        self,
        spec: HttpApiSpec,
        functions: Mapping[str, Function],
        *,
        page: Path | None = PAGE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        server_port: int | None = None,
        account_id: str = ACCOUNT_ID,
    ) -> None:
        missing = sorted({r.function for r in spec.routes} - set(functions))
        if missing:
            raise ValueError(f"no function {', '.join(missing)} for the API's routes")
        self.spec = spec
        self.functions = functions
        self.page = page
        self.wall_clock = wall_clock
        self.server_port = server_port
        self.account_id = account_id
        self._buckets: dict[str, TokenBucket] = {}
        for route in spec.routes:
            throttle: ThrottleSpec | None = spec.route_throttles.get(route.route_key, spec.throttle)
            if throttle is not None:
                self._buckets[route.route_key] = TokenBucket(
                    throttle.rate_limit, throttle.burst_limit, clock=clock
                )

    def _stage_path(self, raw_path: str) -> str | None:
        """The path within the stage (a named stage is the path's first segment)."""
        if self.spec.stage == DEFAULT_STAGE:
            return raw_path
        prefix = f"/{self.spec.stage}"
        if raw_path == prefix or raw_path.startswith(prefix + "/"):
            return raw_path[len(prefix) :] or "/"
        return None

    def handle(self, request: ApiRequest) -> ApiResponse:
        rid = request_id()
        response = self._answer(request, rid)
        response.headers.append(("apigw-requestid", rid))
        return response

    def _header(self, request: ApiRequest, name: str) -> str | None:
        for key, value in request.headers:
            if key.lower() == name:
                return value
        return None

    def _answer(self, request: ApiRequest, rid: str) -> ApiResponse:
        cors = self.spec.cors
        origin = self._header(request, "origin")
        raw_path = request.target.partition("?")[0]
        path = self._stage_path(raw_path)
        matched = match_route(self.spec.routes, request.method, path) if path else None
        if (
            cors is not None
            and request.method == "OPTIONS"
            and (matched is None or matched[0].method != "OPTIONS")
            and self._header(request, "access-control-request-method") is not None
        ):
            # API Gateway answers preflights itself, route or not.
            return ApiResponse(204, preflight_headers(cors, origin))
        if matched is None:
            response = self._page(request.method, path) or message(404, "Not Found")
        else:
            route, parameters = matched
            bucket = self._buckets.get(route.route_key)
            if bucket is not None and not bucket.take():
                response = message(429, "Too Many Requests")
            else:
                response = self._integrate(request, route, parameters, rid)
        if cors is not None:
            response.headers = [
                (k, v) for k, v in response.headers if not k.startswith("access-control-")
            ]
            response.headers.extend(cors_response_headers(cors, origin))
        return response

    def _page(self, method: str, path: str | None) -> ApiResponse | None:
        if method not in ("GET", "HEAD") or path not in ("/", "/index.html"):
            return None
        if self.page is None or not self.page.is_file():
            return None
        headers = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")]
        return ApiResponse(200, headers, self.page.read_bytes())

    def _integrate(
        self, request: ApiRequest, route: RouteSpec, parameters: Mapping[str, str], rid: str
    ) -> ApiResponse:
        function = self.functions[route.function]
        event = build_event(
            request,
            route_key=route.route_key,
            path_parameters=parameters,
            api_id=self.spec.api_id,
            stage=self.spec.stage,
            account_id=self.account_id,
            request_id=rid,
            now=self.wall_clock(),
            server_port=self.server_port,
        )
        invocation = self._invoke(function, event, route.timeout_ms)
        if invocation is None:
            return message(503, "Service Unavailable")
        if not invocation.ok:
            return message(500, "Internal Server Error")
        try:
            return http_response(invocation.response)
        except UnusableResponseError:
            return message(500, "Internal Server Error")

    @staticmethod
    def _invoke(function: Function, event: Any, timeout_ms: int) -> Invocation | None:
        """The function's answer, or None past the integration's timeout (the function
        runs on, as on AWS, but API Gateway stops waiting)."""
        if function.spec.timeout_seconds * 1000 <= timeout_ms:
            return function.invoke(event)
        result: list[Invocation] = []
        worker = threading.Thread(target=lambda: result.append(function.invoke(event)), daemon=True)
        worker.start()
        worker.join(timeout_ms / 1000)
        return result[0] if result else None


# -- the server ------------------------------------------------------------------------
class _Server(LoopbackHTTPServer):
    def __init__(self, owner: HttpApiServer, port: int) -> None:
        self.owner = owner
        # LoopbackHTTPServer binds a free port; this one may be asked for a given one.
        super(LoopbackHTTPServer, self).__init__(("127.0.0.1", port), _Handler)


class HttpApiServer:
    """The socket side: bound at construction (so the template's ``ApiEndpoint`` can
    name it before the functions exist), serving once :meth:`serve` is given the API."""

    def __init__(self, port: int = 0) -> None:
        self.api: HttpApi | None = None
        self._server = _Server(self, port)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(
        self, spec: HttpApiSpec, functions: Mapping[str, Function], *, page: Path | None = PAGE
    ) -> None:
        self.api = HttpApi(spec, functions, page=page, server_port=self.port)
        self._thread = self._server.serve_in_background("http-api")

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        if not self._closed:
            self._closed = True
            self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as browsers expect
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the terminal; the functions' own lines are enough."""

    def handle_expect_100(self) -> bool:
        if declared_length(self) > MAX_BODY_BYTES:
            self._write(message(413, "Request Entity Too Large"), close=True)
            return False
        return super().handle_expect_100()

    def _dispatch(self) -> None:
        api = self.server.owner.api
        try:
            body = read_body(self, limit=MAX_BODY_BYTES)
        except BodyTooLargeError:
            self._write(message(413, "Request Entity Too Large"), close=True)
            return
        except ValueError:
            self._write(message(400, "Bad Request"), close=True)
            return
        if api is None:
            self._write(message(503, "Service Unavailable"))
            return
        request = ApiRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=str(self.client_address[0]),
            protocol=self.request_version,
        )
        response = api.handle(request)
        self._write(response, head=self.command == "HEAD")

    def _write(self, response: ApiResponse, *, close: bool = False, head: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head and response.body:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch
