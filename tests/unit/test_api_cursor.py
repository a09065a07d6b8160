"""The listing cursor: opaque on the way out, checked on the way back in."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdas.api.cursor import (
    MAX_CURSOR_CHARS,
    InvalidCursorError,
    decode_cursor,
    encode_cursor,
)

PK = "image#" + "ab" * 16
OWNER_KEY = {"pk": {"S": PK}, "owner": {"S": "alice"}, "created_at": {"S": "2024-05-01T10:00:00Z"}}
ALBUM_KEY = {
    "pk": {"S": PK},
    "album_key": {"S": "alice/trips"},
    "created_at": {"S": "2024-05-01T10:00:00Z"},
}


def raw_cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def plain(key: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: value["S"] for name, value in key.items()}


def test_a_cursor_round_trips_to_the_exclusive_start_key() -> None:
    cursor = encode_cursor(OWNER_KEY)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor, owner="alice", album=None) == OWNER_KEY
    album_cursor = encode_cursor(ALBUM_KEY)
    assert decode_cursor(album_cursor, owner="alice", album="trips") == ALBUM_KEY


def test_a_cursor_is_opaque_but_holds_no_type_tags() -> None:
    decoded = json.loads(base64.urlsafe_b64decode(encode_cursor(OWNER_KEY) + "=="))
    assert decoded == plain(OWNER_KEY)


def test_plain_string_keys_encode_the_same() -> None:
    assert encode_cursor(plain(OWNER_KEY)) == encode_cursor(OWNER_KEY)


def test_a_key_with_a_non_string_attribute_is_not_encoded() -> None:
    with pytest.raises(TypeError):
        encode_cursor({"pk": {"S": PK}, "n": {"N": "1"}})


@given(
    owner=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    created=st.text(min_size=1, max_size=40),
)
def test_any_key_the_table_hands_out_round_trips(owner: str, created: str) -> None:
    key = {"pk": {"S": PK}, "owner": {"S": owner}, "created_at": {"S": created}}
    assert decode_cursor(encode_cursor(key), owner=owner, album=None) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "e30",  # {}
        "!!!!",
        "a",  # not even base64
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode().rstrip("="),  # not UTF-8
        raw_cursor("a string"),
        raw_cursor([PK, "alice"]),
        raw_cursor(None),
        raw_cursor({**plain(OWNER_KEY), "extra": "x"}),
        raw_cursor({k: v for k, v in plain(OWNER_KEY).items() if k != "created_at"}),
        raw_cursor({**plain(OWNER_KEY), "owner": "bob"}),
        raw_cursor({**plain(OWNER_KEY), "owner": {"S": "alice"}}),  # typed, not plain
        raw_cursor({**plain(OWNER_KEY), "created_at": 5}),
        raw_cursor({**plain(OWNER_KEY), "created_at": ""}),
        raw_cursor({**plain(OWNER_KEY), "created_at": "x" * 1000}),
        raw_cursor({**plain(OWNER_KEY), "pk": "path#alice/trips/a.jpg"}),
        raw_cursor({**plain(OWNER_KEY), "pk": "image#" + "AB" * 16}),
        raw_cursor(plain(ALBUM_KEY)),  # an album's cursor for the whole listing
        "A" * (MAX_CURSOR_CHARS + 4),
        encode_cursor(OWNER_KEY) + "=",  # padding is never part of a cursor
    ],
)
def test_a_malformed_or_foreign_owner_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor, owner="alice", album=None)


@pytest.mark.parametrize(
    ("cursor", "album"),
    [
        (encode_cursor(ALBUM_KEY), "home"),  # another album of the same owner
        (encode_cursor({**ALBUM_KEY, "album_key": {"S": "bob/trips"}}), "trips"),
        (encode_cursor({**ALBUM_KEY, "album_key": {"S": "alice/trips/x"}}), "trips"),
        (encode_cursor(OWNER_KEY), "trips"),  # the whole listing's cursor for an album
    ],
)
def test_an_album_cursor_only_continues_that_album_of_that_owner(cursor: str, album: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor, owner="alice", album=album)


def test_an_owner_cursor_is_refused_for_another_owner() -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(encode_cursor(OWNER_KEY), owner="bob", album=None)
