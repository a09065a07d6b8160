"""The listing's opaque cursor: DynamoDB's LastEvaluatedKey as base64url JSON.

Every attribute of an images-index key is a string, so a cursor is the key with its
type tags dropped (``{"pk": "image#…", "owner": "alice", "created_at": "…"}``), as
compact JSON in unpadded base64url. Nothing is signed: a cursor coming back is
checked instead. It must name exactly the attributes of the index being read, all
strings, and its partition (``owner``, or ``album_key`` = ``owner/album``) must be the
caller's own, so an edited cursor can only move within the caller's own images.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from lambdas.shared.keys import IMAGE_ID

# The key attributes of a page's last item: the table's key, then the index's.
OWNER_KEY_NAMES = frozenset({"pk", "owner", "created_at"})  # index by-owner
ALBUM_KEY_NAMES = frozenset({"pk", "album_key", "created_at"})  # index by-album
# Far above any real cursor (owner 64 + album 128 + ids and times), far below abuse.
MAX_CURSOR_CHARS = 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_PK = re.compile(rf"image#{IMAGE_ID.pattern}")
_MAX_VALUE_CHARS = 256


class InvalidCursorError(ValueError):
    """A cursor this API did not hand out for this caller and listing."""


def encode_cursor(last_key: Mapping[str, Any]) -> str:
    """The cursor for a page that ended at ``last_key`` (a DynamoDB LastEvaluatedKey)."""
    plain: dict[str, str] = {}
    for name, value in last_key.items():
        if isinstance(value, Mapping) and set(value) == {"S"} and isinstance(value["S"], str):
            plain[name] = value["S"]
        elif isinstance(value, str):
            plain[name] = value
        else:
            raise TypeError(f"key attribute {name!r} is not a string")
    text = json.dumps(plain, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, *, owner: str, album: str | None) -> dict[str, dict[str, str]]:
    """The ExclusiveStartKey a cursor stands for; InvalidCursorError unless it is one this
    API could have handed ``owner`` for this listing (all images, or ``album``)."""
    if len(cursor) > MAX_CURSOR_CHARS or not _BASE64URL.fullmatch(cursor):
        raise InvalidCursorError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw.decode("utf-8"))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError all are
        raise InvalidCursorError("not base64url JSON") from None
    expected = OWNER_KEY_NAMES if album is None else ALBUM_KEY_NAMES
    if not isinstance(data, dict) or set(data) != expected:
        raise InvalidCursorError("not a key of this listing")
    if not all(isinstance(v, str) and 0 < len(v) <= _MAX_VALUE_CHARS for v in data.values()):
        raise InvalidCursorError("key attributes must be strings")
    if album is None:
        if data["owner"] != owner:
            raise InvalidCursorError("another owner's cursor")
    elif data["album_key"] != f"{owner}/{album}":
        raise InvalidCursorError("another album's cursor")
    if not _PK.fullmatch(data["pk"]):
        raise InvalidCursorError("not an image key")
    return {name: {"S": value} for name, value in data.items()}
