"""Event factories: API Gateway HTTP API requests, payload format 2.0, as API Gateway sends them.

``http_event("GET /v1/images/{id}", path_params={"id": image_id}, query={"limit": "2"},
key=api_key)`` is what API Gateway hands the function when that route matched: the
route template as ``routeKey``, the filled-in path as ``rawPath`` and
``requestContext.http.path``, header names lower-cased, ``queryStringParameters`` only
when there is a query (a repeated parameter's values joined with commas), and
``pathParameters`` only when the route has some. A ``bytes`` body arrives base64-encoded
with ``isBase64Encoded`` true; a ``dict`` or ``list`` body is sent as JSON.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

API_ID = "a1b2c3d4e5"
ACCOUNT_ID = "123456789012"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
SOURCE_IP = "203.0.113.7"
USER_AGENT = "pytest-http-events/1.0"
_PARAM = re.compile(r"\{([A-Za-z0-9_]+)\+?\}")

Query = Mapping[str, str | Sequence[str]]


def http_event(
    route: str,
    *,
    path_params: Mapping[str, str] | None = None,
    raw_path: str | None = None,
    query: Query | None = None,
    headers: Mapping[str, str] | None = None,
    key: str | None = None,
    body: str | bytes | Mapping[str, Any] | list[Any] | None = None,
    source_ip: str = SOURCE_IP,
    method: str = "GET",
) -> dict[str, Any]:
    """One request to ``route`` ("METHOD /path/{param}"), or, with ``route="$default"``
    (the catch-all route), ``method`` on ``raw_path``.

    ``key``: sent as ``Authorization: Bearer <key>``; ``headers`` are added as given
    (names lower-cased, as API Gateway does).
    """
    if route == "$default":
        if raw_path is None:
            raise ValueError("the $default route needs raw_path")
        template = raw_path
    else:
        method, template = route.split(" ", 1)
    params = dict(path_params or {})
    path = raw_path if raw_path is not None else _fill(template, params)

    all_headers: dict[str, str] = {
        "host": DOMAIN,
        "user-agent": USER_AGENT,
        "accept": "application/json",
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        "x-amzn-trace-id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
    }
    if key is not None:
        all_headers["authorization"] = f"Bearer {key}"
    for name, value in (headers or {}).items():
        all_headers[name.lower()] = value

    encoded_body, is_base64 = _body(body)
    if encoded_body is not None:
        all_headers.setdefault(
            "content-type", "application/octet-stream" if is_base64 else "application/json"
        )
        raw = base64.b64decode(encoded_body) if is_base64 else encoded_body.encode()
        all_headers["content-length"] = str(len(raw))

    pairs = [
        (name, value)
        for name, values in (query or {}).items()
        for value in ([values] if isinstance(values, str) else list(values))
    ]
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": urllib.parse.urlencode(pairs),
        "headers": all_headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": all_headers["user-agent"],
            },
            "requestId": base64.b32encode(uuid.uuid4().bytes).decode()[:16],
            "routeKey": route,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if pairs:
        joined: dict[str, list[str]] = {}
        for name, value in pairs:
            joined.setdefault(name, []).append(value)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in joined.items()}
    if params:
        event["pathParameters"] = params
    if encoded_body is not None:
        event["body"] = encoded_body
    return event


def _fill(template: str, params: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"route parameter {name!r} not given")
        return urllib.parse.quote(params[name], safe="")

    return _PARAM.sub(value, template)


def _body(body: str | bytes | Mapping[str, Any] | list[Any] | None) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    if isinstance(body, bytes):
        return base64.b64encode(body).decode("ascii"), True
    if isinstance(body, str):
        return body, False
    return json.dumps(body), False


# -- the API's routes, for tests ----------------------------------------------------------
def post_upload(
    key: str | None, body: str | bytes | Mapping[str, Any] | list[Any] | None
) -> dict[str, Any]:
    return http_event("POST /v1/uploads", key=key, body=body)


def get_image(key: str | None, image_id: str) -> dict[str, Any]:
    return http_event("GET /v1/images/{id}", path_params={"id": image_id}, key=key)


def list_images(key: str | None, **query: str) -> dict[str, Any]:
    return http_event("GET /v1/images", query=query, key=key)
