"""Destination input checks and the part regrouping of the uploader: pure logic."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from lambdas.backup.transfer import iter_parts
from lambdas.shared.destinations import DestinationCredentials
from pixflare.operations.backup_destinations import (
    DestinationRequest,
    InvalidDestinationError,
    normalize_prefix,
    validate_request,
)

SECRET = "s3cr3t-never-shown"


def request(**overrides: object) -> DestinationRequest:
    values: dict[str, object] = {
        "owner": "alice",
        "bucket": "alice-backups",
        "credentials": DestinationCredentials("AKIAEXAMPLEKEY1234", SecretStr(SECRET)),
        "endpoint_url": "http://127.0.0.1:9000",
        "prefix": "",
    }
    values.update(overrides)
    return DestinationRequest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("", ""), ("/", ""), ("photos", "photos/"), ("/photos/", "photos/"), ("a/b", "a/b/")],
)
def test_prefix_is_normalized_to_end_in_a_slash(given: str, expected: str) -> None:
    assert normalize_prefix(given) == expected


@pytest.mark.parametrize("bad", ["../x", "a/../b", "a//b/./c", "with space"])
def test_prefix_cannot_escape_or_hold_odd_segments(bad: str) -> None:
    with pytest.raises(InvalidDestinationError):
        normalize_prefix(bad)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"endpoint_url": "ftp://host"}, "http:// or https://"),
        ({"endpoint_url": "http://user:pw@host"}, "must not carry credentials"),
        ({"bucket": "No_Such Bucket"}, "not a valid bucket name"),
        ({"owner": "../root"}, "owner"),
        ({"region": "US East"}, "region"),
        ({"credentials": DestinationCredentials("", SecretStr(""))}, "access key id"),
    ],
)
def test_bad_destination_input_is_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidDestinationError, match=message):
        validate_request(request(**overrides))


def test_valid_request_keeps_only_a_hint_of_the_key() -> None:
    destination = validate_request(request(prefix="/team/", endpoint_url="https://s3.example/"))
    assert destination.prefix == "team/"
    assert destination.endpoint_url == "https://s3.example"
    assert destination.object_key("alice", "trip", "a.jpg") == "team/alice/trip/a.jpg"
    public = destination.to_public()
    assert public["accessKeyId"] == "AKIA…1234"
    assert SECRET not in repr(public) + repr(destination) + repr(request())


def test_empty_endpoint_means_aws() -> None:
    assert validate_request(request(endpoint_url="")).to_public()["endpoint"] == "(AWS)"


def test_parts_are_regrouped_to_the_part_size() -> None:
    chunks = [b"a" * 3, b"b" * 7, b"c" * 1, b"d" * 9]
    parts = list(iter_parts(chunks, 8))
    assert [len(p) for p in parts] == [8, 8, 4]
    assert b"".join(parts) == b"".join(chunks)
    assert list(iter_parts([], 8)) == []
