"""Per-owner API keys under moto: create, authenticate, list, revoke; and the commands."""

from __future__ import annotations

import io
import json

import boto3
import pytest

from lambdas.shared.api_keys import ApiKeyRepository, key_hash, key_id_of
from lambdas.shared.errors import NotFoundError
from pixflare import cli
from tests.support.aws_resources import REGION, Resources
from tests.support.env import use_env


@pytest.fixture
def keys(aws: Resources) -> ApiKeyRepository:
    return ApiKeyRepository(aws.tables["api_keys"])


def _items(aws: Resources) -> list[dict]:
    # A test may scan; the code never does.
    return boto3.client("dynamodb", region_name=REGION).scan(TableName=aws.tables["api_keys"])[
        "Items"
    ]


def test_a_created_key_authenticates_as_its_owner(keys: ApiKeyRepository) -> None:
    created = keys.create("alice")
    assert created.key.startswith("pfk_")
    assert created.record.key_id == key_id_of(key_hash(created.key))
    assert keys.authenticate(created.key) == "alice"


def test_only_the_hash_is_stored(aws: Resources, keys: ApiKeyRepository) -> None:
    created = keys.create("alice")
    (item,) = _items(aws)
    assert item["key_hash"] == {"S": key_hash(created.key)}
    assert item["key_id"] == {"S": created.record.key_id}
    assert item["revoked"] == {"BOOL": False}
    assert created.key not in json.dumps(item)
    assert created.key.removeprefix("pfk_") not in json.dumps(item)


def test_unknown_and_near_miss_keys_do_not_authenticate(keys: ApiKeyRepository) -> None:
    created = keys.create("alice")
    assert keys.authenticate("pfk_" + "A" * 43) is None  # well formed, unknown
    flipped = created.key[:-1] + ("A" if created.key[-1] != "A" else "B")
    assert keys.authenticate(flipped) is None
    assert keys.authenticate(created.key + "x") is None  # malformed


def test_a_key_whose_id_matches_but_hash_differs_is_refused(
    aws: Resources, keys: ApiKeyRepository
) -> None:
    # Given a stored key id whose full hash is not the presented key's
    created = keys.create("alice")
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=aws.tables["api_keys"],
        Key={"key_id": {"S": created.record.key_id}},
        UpdateExpression="SET key_hash = :h",
        ExpressionAttributeValues={":h": {"S": created.record.key_id + "0" * 52}},
    )
    # Then the id alone lets no one in
    assert keys.authenticate(created.key) is None


def test_a_key_of_one_owner_never_authenticates_as_another(keys: ApiKeyRepository) -> None:
    alice = keys.create("alice")
    bob = keys.create("bob")
    assert keys.authenticate(alice.key) == "alice"
    assert keys.authenticate(bob.key) == "bob"
    assert [k.key_id for k in keys.list_keys("alice")] == [alice.record.key_id]
    assert [k.key_id for k in keys.list_keys("bob")] == [bob.record.key_id]
    keys.revoke(bob.record.key_id)
    assert keys.authenticate(alice.key) == "alice"
    assert keys.authenticate(bob.key) is None


def test_list_shows_ids_oldest_first_never_the_key_or_hash(keys: ApiKeyRepository) -> None:
    first, second = keys.create("alice"), keys.create("alice")
    listed = keys.list_keys("alice")
    assert [k.key_id for k in listed] == [first.record.key_id, second.record.key_id]
    shown = json.dumps([k.to_public() for k in listed])
    for created in (first, second):
        assert created.key not in shown
        assert key_hash(created.key) not in shown
    assert keys.list_keys("carol") == []


def test_revoke_is_conditional_idempotent_and_final(keys: ApiKeyRepository) -> None:
    created = keys.create("alice")
    first = keys.revoke(created.record.key_id)
    assert first.record.revoked and not first.already_revoked and first.record.revoked_at
    assert keys.authenticate(created.key) is None
    again = keys.revoke(created.record.key_id)
    assert again.already_revoked and again.record.revoked_at == first.record.revoked_at
    assert keys.authenticate(created.key) is None
    (listed,) = keys.list_keys("alice")
    assert listed.revoked and listed.revoked_at == first.record.revoked_at


def test_revoking_an_unknown_id_is_not_found_and_creates_nothing(
    aws: Resources, keys: ApiKeyRepository
) -> None:
    with pytest.raises(NotFoundError, match="no API key 0123456789ab"):
        keys.revoke("0123456789ab")
    assert _items(aws) == []


def test_a_taken_key_id_is_drawn_again(
    aws: Resources, keys: ApiKeyRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two keys whose hashes start alike (forced: the first draw is repeated)
    from lambdas.shared import api_keys

    draws = iter(["pfk_" + "A" * 43, "pfk_" + "A" * 43, "pfk_" + "B" * 43])
    monkeypatch.setattr(api_keys, "generate_key", lambda: next(draws))
    first = keys.create("alice")
    second = keys.create("bob")
    # Then the second never overwrote the first
    assert second.key == "pfk_" + "B" * 43
    assert keys.authenticate(first.key) == "alice"
    assert keys.authenticate(second.key) == "bob"
    assert len(_items(aws)) == 2


# --- the commands ---------------------------------------------------------------


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def commands(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    from lambdas.shared.config import load_settings

    use_env(monkeypatch, aws.env())
    monkeypatch.setattr(cli, "resolve_settings", lambda **_: load_settings())
    return aws


def test_keys_commands_create_list_revoke(commands: Resources, keys: ApiKeyRepository) -> None:
    code, out, err = _run("keys", "create", "--owner", "alice")
    assert code == 0, err
    intro, key = out.splitlines()
    assert "cannot be shown again" in intro
    assert keys.authenticate(key) == "alice"
    key_id = key_id_of(key_hash(key))

    code, out, _ = _run("keys", "list", "--owner", "alice")
    assert code == 0 and key_id in out and "active" in out and key not in out

    code, out, _ = _run("keys", "revoke", key_id)
    assert code == 0 and f"API key {key_id} of alice revoked" in out
    code, out, _ = _run("keys", "revoke", key_id)
    assert code == 0 and "already revoked" in out
    assert keys.authenticate(key) is None

    code, out, _ = _run("keys", "list", "--owner", "alice", "--json")
    (listed,) = json.loads(out)
    assert listed["keyId"] == key_id and listed["revoked"] is True
    assert "key" not in listed and "hash" not in json.dumps(listed).lower()


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (("keys", "revoke", "0123456789ab"), "no API key 0123456789ab"),
        (("keys", "revoke", "nope"), "12 hex digits"),
        (("keys", "create", "--owner", "../x"), "API key not created: owner"),
        (("keys", "list", "--owner", "a/b"), "owner may not contain a slash"),
    ],
)
def test_keys_commands_fail_in_one_line(
    commands: Resources, argv: tuple[str, ...], reason: str
) -> None:
    code, out, err = _run(*argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and reason in err, err


def test_a_stack_without_the_table_says_so(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdas.shared.config import load_settings

    use_env(monkeypatch, {k: v for k, v in aws.env().items() if k != "API_KEYS_TABLE"})
    monkeypatch.setattr(cli, "resolve_settings", lambda **_: load_settings())
    code, _, err = _run("keys", "list", "--owner", "alice")
    assert code == 1 and "no API keys table" in err
