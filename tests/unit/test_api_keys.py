"""API keys without a table: their format, their hash and id, malformed keys, the header."""

from __future__ import annotations

import hashlib
import string

import pytest

from lambdas.shared import api_keys
from lambdas.shared.api_keys import (
    KEY_PREFIX,
    ApiKey,
    ApiKeyRepository,
    CreatedKey,
    bearer_key,
    generate_key,
    is_well_formed,
    key_hash,
    key_id_of,
)
from lambdas.shared.errors import NotFoundError
from lambdas.shared.keys import InvalidNameError

URLSAFE = set(string.ascii_letters + string.digits + "-_")


def test_a_key_is_the_prefix_and_32_random_bytes_in_urlsafe_base64() -> None:
    key = generate_key()
    assert KEY_PREFIX == "pfk_" and key.startswith(KEY_PREFIX)
    body = key.removeprefix("pfk_")
    assert len(body) == 43  # 32 bytes, unpadded base64
    assert set(body) <= URLSAFE
    assert is_well_formed(key)


def test_keys_are_not_repeated() -> None:
    assert len({generate_key() for _ in range(200)}) == 200


def test_the_hash_is_sha256_hex_of_the_whole_key_and_the_id_its_first_12_digits() -> None:
    key = "pfk_" + "A" * 43
    hashed = key_hash(key)
    assert hashed == hashlib.sha256(key.encode()).hexdigest()
    assert len(hashed) == 64
    assert key_id_of(hashed) == hashed[:12]
    # the id says nothing about the key beyond its hash
    assert key not in hashed and "AAAA" not in key_id_of(hashed)


@pytest.mark.parametrize(
    "presented",
    [
        None,
        b"pfk_" + b"A" * 43,
        42,
        "",
        "pfk_",
        "A" * 47,  # no prefix
        "PFK_" + "A" * 43,  # the prefix is lower case
        "pfk_" + "A" * 42,  # one short
        "pfk_" + "A" * 44,  # one long
        "pfk_" + "A" * 42 + "=",  # padding is not urlsafe-unpadded
        "pfk_" + "A" * 42 + "/",
        "pfk_" + "A" * 42 + "é",
        " pfk_" + "A" * 43,
        "pfk_" + "A" * 43 + "\n",
        "Bearer pfk_" + "A" * 43,
    ],
)
def test_malformed_keys_are_refused_without_asking_the_table(presented: object) -> None:
    assert not is_well_formed(presented)
    # No table, no client: a malformed key returns None before any AWS call.
    assert ApiKeyRepository("no-such-table").authenticate(presented) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer pfk_abc", "pfk_abc"),
        ("bearer   pfk_abc  ", "pfk_abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
        (None, None),
    ],
)
def test_the_key_of_an_authorization_header(header: str | None, expected: str | None) -> None:
    assert bearer_key(header) == expected


def test_what_commands_show_never_holds_a_hash() -> None:
    record = ApiKey(key_id="0123456789ab", owner="alice", created="2026-01-01T00:00:00.000000Z")
    assert set(record.to_public()) == {"keyId", "owner", "created", "revoked", "revokedAt"}
    created = CreatedKey(record=record, key="pfk_" + "A" * 43)
    assert created.to_public() == {
        "owner": "alice",
        "keyId": "0123456789ab",
        "key": "pfk_" + "A" * 43,
        "created": "2026-01-01T00:00:00.000000Z",
    }
    assert "key_hash" not in api_keys._PUBLIC_FIELDS


@pytest.mark.parametrize("owner", ["", "../x", "a/b", ".", "x" * 65, "-flag"])
def test_an_owner_that_is_not_a_name_gets_no_key(owner: str) -> None:
    with pytest.raises(InvalidNameError):
        ApiKeyRepository("no-such-table").create(owner)


@pytest.mark.parametrize("key_id", ["", "0123456789a", "0123456789ABC", "0123456789abc", "g" * 12])
def test_revoking_a_malformed_id_is_not_found_in_one_line(key_id: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        ApiKeyRepository("no-such-table").revoke(key_id)
    assert "\n" not in str(caught.value) and "12 hex digits" in str(caught.value)
