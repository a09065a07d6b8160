"""The request-body reader the local stack's HTTP servers share (pixflare.local.loopback)."""

from __future__ import annotations

import io
from email.message import Message
from typing import Any, cast

import pytest

from pixflare.local.loopback import BodyTooLargeError, read_body


def request(body: bytes, **headers: str) -> Any:
    message = Message()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    # Bytes after the body belong to the next request on a kept-alive connection.
    return cast(Any, type("Req", (), {"headers": message, "rfile": io.BytesIO(body + b"NEXT")}))


def test_a_content_length_body_is_read_and_the_next_request_left_alone() -> None:
    handler = request(b"hello", Content_Length="5")
    assert read_body(handler) == b"hello"
    assert handler.rfile.read() == b"NEXT"


def test_a_chunked_body_is_deframed_with_its_trailers_dropped() -> None:
    handler = request(
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", Transfer_Encoding="chunked"
    )
    assert read_body(handler) == b"hello world"
    assert handler.rfile.read() == b"NEXT"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"x" * 11, {"Content_Length": "11"}),
        (b"6\r\nxxxxxx\r\n6\r\nxxxxxx\r\n0\r\n\r\n", {"Transfer_Encoding": "chunked"}),
    ],
)
def test_a_body_over_the_limit_is_refused(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(BodyTooLargeError):
        read_body(request(body, **headers), limit=10)


def test_no_body_is_empty() -> None:
    assert read_body(request(b"")) == b""
    assert read_body(request(b"", Content_Length="nonsense")) == b""
