"""The API keys table: per-owner keys for the HTTP API, stored as hashes only.

A key is ``pfk_`` followed by ``secrets.token_urlsafe(32)`` (43 URL-safe base64
characters, 256 random bits); clients send it as ``Authorization: Bearer <key>``.
It is shown once, when created, and never stored: the table holds its SHA-256 (hex)
under ``key_id``, the first 12 hex digits of that hash, which is also the key's
public name (``pixflare keys list`` shows it, ``pixflare keys revoke`` takes it).

Keyed on ``key_id``, a presented key is found with one GetItem (consistent, so a
revoke holds at once) from its own hash, and the full hashes are then compared with
``hmac.compare_digest``; ``revoke KEY_ID`` is one conditional UpdateItem on the same
key. An owner's keys are listed through the GSI ``by-owner`` (``owner``,
``created_at``), never a scan. A plain SHA-256 suffices: the keys are random, so
there is nothing for a slow, salted hash to protect against guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from lambdas.shared import aws, clock
from lambdas.shared.dynamo import from_item, serialize, to_item
from lambdas.shared.errors import ConditionFailedError, NotFoundError, TransientError, aws_errors
from lambdas.shared.keys import validate_segment

KEY_PREFIX = "pfk_"
KEY_BYTES = 32
KEY_ID_LENGTH = 12
BY_OWNER_INDEX = "by-owner"
# token_urlsafe(32): 32 bytes in unpadded URL-safe base64 = 43 characters.
KEY_PATTERN = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{43}}")
KEY_ID_PATTERN = re.compile(rf"[0-9a-f]{{{KEY_ID_LENGTH}}}")
_BEARER = re.compile(r"Bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)
# Attempts at a key whose id is not taken (48 bits: a clash is rare, never silent).
_CREATE_ATTEMPTS = 5
# What list reads from the index: never the hash.
_PUBLIC_FIELDS = ("key_id", "owner", "created_at", "revoked", "revoked_at")


def generate_key() -> str:
    """A new key: the prefix naming it, then 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def is_well_formed(presented: object) -> TypeGuard[str]:
    """Whether ``presented`` has the shape of a key (no table is asked)."""
    return isinstance(presented, str) and KEY_PATTERN.fullmatch(presented) is not None


def key_hash(key: str) -> str:
    """SHA-256 of the key (its UTF-8 text, prefix included), hex: all the table keeps."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(hashed: str) -> str:
    """The key's public id: the first 12 hex digits of its hash."""
    return hashed[:KEY_ID_LENGTH]


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None."""
    if not authorization:
        return None
    match = _BEARER.fullmatch(authorization.strip())
    return match.group(1) if match else None


@dataclass(frozen=True)
class ApiKey:
    """What may be shown of a key: never the key, never its hash."""

    key_id: str
    owner: str
    created: str
    revoked: bool = False
    revoked_at: str = ""

    def to_public(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "owner": self.owner,
            "created": self.created,
            "revoked": self.revoked,
            "revokedAt": self.revoked_at or None,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ApiKey:
        data = from_item(item)
        return cls(
            key_id=str(data["key_id"]),
            owner=str(data.get("owner", "")),
            created=str(data.get("created_at", "")),
            revoked=bool(data.get("revoked", False)),
            revoked_at=str(data.get("revoked_at", "") or ""),
        )


@dataclass(frozen=True)
class CreatedKey:
    """A key just made: ``key`` exists only here, to be shown once."""

    record: ApiKey
    key: str

    def to_public(self) -> dict[str, Any]:
        return {
            "owner": self.record.owner,
            "keyId": self.record.key_id,
            "key": self.key,
            "created": self.record.created,
        }


@dataclass(frozen=True)
class Revocation:
    record: ApiKey
    already_revoked: bool  # revoking twice changes nothing


class ApiKeyRepository:
    def __init__(self, table_name: str) -> None:
        self.table = table_name

    def create(self, owner: str) -> CreatedKey:
        """A new key for ``owner`` (InvalidNameError for a name that is not an owner)."""
        validate_segment("owner", owner)
        for _ in range(_CREATE_ATTEMPTS):
            key = generate_key()
            hashed = key_hash(key)
            record = ApiKey(
                key_id=key_id_of(hashed), owner=owner, created=clock.iso(clock.utcnow())
            )
            item = to_item(
                {
                    "key_id": record.key_id,
                    "key_hash": hashed,
                    "owner": owner,
                    "created_at": record.created,
                    "revoked": False,
                }
            )
            try:
                with aws_errors(f"create API key for {owner}"):
                    aws.dynamodb().put_item(
                        TableName=self.table,
                        Item=item,
                        ConditionExpression="attribute_not_exists(key_id)",
                    )
            except ConditionFailedError:
                continue  # another key has this id: draw again
            return CreatedKey(record=record, key=key)
        raise TransientError(f"create API key for {owner}: no free key id after retries")

    def authenticate(self, presented: object) -> str | None:
        """The owner of a valid key; None for a malformed, unknown or revoked one.

        AWS failures raise (TransientError and kin): "cannot check" is not "no".
        """
        if not is_well_formed(presented):
            return None
        hashed = key_hash(presented)
        with aws_errors("look up API key"):
            response = aws.dynamodb().get_item(
                TableName=self.table,
                Key={"key_id": serialize(key_id_of(hashed))},
                ConsistentRead=True,
            )
        item = response.get("Item")
        if not item:
            return None
        data = from_item(item)
        stored = str(data.get("key_hash", ""))
        if not hmac.compare_digest(stored.encode(), hashed.encode()):
            return None
        if data.get("revoked") is not False:
            return None  # revoked, or a record without the flag: never let it in
        owner = str(data.get("owner", ""))
        return owner or None

    def list_keys(self, owner: str) -> list[ApiKey]:
        """The owner's keys, oldest first (GSI ``by-owner``; the hash is never read)."""
        validate_segment("owner", owner)
        names = {f"#{name}": name for name in _PUBLIC_FIELDS}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": BY_OWNER_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":owner": serialize(owner)},
            "ProjectionExpression": ", ".join(names),
        }
        found: list[ApiKey] = []
        while True:
            with aws_errors(f"list API keys of {owner}"):
                response = aws.dynamodb().query(**kwargs)
            found.extend(ApiKey.from_item(item) for item in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                return found
            kwargs["ExclusiveStartKey"] = start

    def revoke(self, key_id: str) -> Revocation:
        """Revoke a key by its id; again changes nothing. NotFoundError for an unknown id."""
        if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
            raise NotFoundError(
                f"no API key {key_id!r}: a key id is {KEY_ID_LENGTH} hex digits "
                "(see `pixflare keys list`)"
            )
        now = clock.iso(clock.utcnow())
        try:
            with aws_errors(f"revoke API key {key_id}"):
                response = aws.dynamodb().update_item(
                    TableName=self.table,
                    Key={"key_id": serialize(key_id)},
                    # The first revoke's time stays: a second one changes nothing.
                    UpdateExpression="SET revoked = :true, "
                    "revoked_at = if_not_exists(revoked_at, :now)",
                    ConditionExpression="attribute_exists(key_id)",
                    ExpressionAttributeValues={":true": serialize(True), ":now": serialize(now)},
                    ReturnValues="ALL_OLD",
                )
        except ConditionFailedError:
            raise NotFoundError(f"no API key {key_id}") from None
        before = ApiKey.from_item(response["Attributes"])
        record = ApiKey(
            key_id=before.key_id,
            owner=before.owner,
            created=before.created,
            revoked=True,
            revoked_at=before.revoked_at or now,
        )
        return Revocation(record=record, already_revoked=before.revoked)
