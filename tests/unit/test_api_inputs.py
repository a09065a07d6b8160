"""The API's request shapes: the upload body, its encoding, the listing's limit."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lambdas.api.errors import BadRequest
from lambdas.api.inputs import (
    DEFAULT_LIMIT,
    MAX_BODY_BYTES,
    UploadRequest,
    body_text,
    parse_limit,
    parse_upload_request,
)

GOOD = {"album": "trips", "filename": "beach.jpg", "contentType": "image/jpeg", "size": 1234}


def parse(data: Any) -> UploadRequest:
    return parse_upload_request(json.dumps(data))


def test_a_good_body_parses() -> None:
    request = parse(GOOD)
    assert request == UploadRequest(
        album="trips", filename="beach.jpg", contentType="image/jpeg", size=1234
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"size": 0}, "size: Input should be greater than 0"),
        ({"size": -5}, "size: Input should be greater than 0"),
        ({"size": "1234"}, "size: Input should be a valid integer"),
        ({"size": 12.0}, "size: Input should be a valid integer"),
        ({"size": True}, "size: Input should be a valid integer"),
        ({"size": None}, "size: Input should be a valid integer"),
        ({"album": 5}, "album: Input should be a valid string"),
        ({"filename": ["a"]}, "filename: Input should be a valid string"),
        ({"contentType": "x" * 300}, "contentType: String should have at most 255 characters"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_wrong_types_are_refused_in_one_line(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse({**GOOD, **change})
    assert caught.value.message == reason
    assert caught.value.status == 400


def test_missing_fields_are_named_and_counted() -> None:
    with pytest.raises(BadRequest) as caught:
        parse({})
    message = caught.value.message
    assert message.startswith("album: Field required; filename: Field required;")
    assert message.endswith("and 1 more") and "\n" not in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "request body is not valid JSON"),
        ("{", "request body is not valid JSON"),
        ("NaN-ish", "request body is not valid JSON"),
        ("[]", "request body must be a JSON object"),
        ('"album"', "request body must be a JSON object"),
        ("null", "request body must be a JSON object"),
    ],
)
def test_malformed_json_is_refused(text: str, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        parse_upload_request(text)


def test_names_are_left_to_the_shared_checks() -> None:
    # "../x" is the right shape here; reserve_upload refuses it with its own reason.
    assert parse({**GOOD, "filename": "../x"}).filename == "../x"


def test_a_base64_body_is_decoded() -> None:
    raw = json.dumps(GOOD)
    assert body_text(base64.b64encode(raw.encode()).decode(), base64_encoded=True) == raw
    assert body_text(raw, base64_encoded=False) == raw
    assert body_text(None, base64_encoded=False) == ""


@pytest.mark.parametrize("body", ["not base64!", base64.b64encode(b"\xff\xfe").decode()])
def test_an_undecodable_body_is_refused(body: str) -> None:
    with pytest.raises(BadRequest, match="UTF-8 JSON"):
        body_text(body, base64_encoded=True)


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BadRequest, match="larger than"):
        body_text("x" * (MAX_BODY_BYTES + 1), base64_encoded=False)


@pytest.mark.parametrize(("raw", "limit"), [(None, DEFAULT_LIMIT), ("1", 1), ("100", 100)])
def test_limit(raw: str | None, limit: int) -> None:
    assert parse_limit(raw) == limit


@pytest.mark.parametrize("raw", ["0", "101", "", "-1", "+5", "1.0", " 5", "abc", "0005", "1e2"])
def test_limit_out_of_range(raw: str) -> None:
    with pytest.raises(BadRequest, match="limit must be a whole number from 1 to 100"):
        parse_limit(raw)
