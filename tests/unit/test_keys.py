"""Key layout and segment validation: no name can escape its owner's prefix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdas.shared.keys import (
    VARIANT_NAMES,
    ImagePath,
    InvalidNameError,
    parse_key,
    validate_image_id,
    validate_segment,
)


def test_keys_follow_the_contract() -> None:
    path = ImagePath("alice", "trip-2026", "beach.jpg")
    assert path.original_key == "alice/trip-2026/beach.jpg/original"
    assert path.variant_key("w512") == "alice/trip-2026/beach.jpg/w512"
    assert path.variant_key("og-image") == "alice/trip-2026/beach.jpg/og-image"
    assert path.all_keys()[0] == path.original_key
    assert len(path.all_keys()) == 1 + len(VARIANT_NAMES) == 9


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (".", "may not be"),
        ("..", "may not be"),
        ("a/b", "slash"),
        ("a\\b", "slash"),
        ("../etc", "slash"),
        (".hidden", "must start with a letter or digit"),
        ("-rf", "must start with a letter or digit"),
        ("café", "ASCII"),
        ("名前", "ASCII"),
        ("a b", "only"),
        ("a\x00b", "only"),
        ("a\nb", "only"),
        ("x" * 65, "longer than 64"),
    ],
)
def test_bad_owner_names_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidNameError, match=reason):
        validate_segment("owner", value)


def test_each_kind_has_its_own_length_limit() -> None:
    validate_segment("filename", "f" * 200)
    with pytest.raises(InvalidNameError, match="200"):
        validate_segment("filename", "f" * 201)
    validate_segment("album", "a" * 128)
    with pytest.raises(InvalidNameError):
        validate_segment("album", "a" * 129)


def test_path_construction_validates_every_segment() -> None:
    with pytest.raises(InvalidNameError, match="album"):
        ImagePath("alice", "..", "x.jpg")


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(InvalidNameError):
        ImagePath("a", "b", "c").variant_key("w4096")


def test_parse_key_round_trips_and_refuses_foreign_keys() -> None:
    path = ImagePath("alice", "trip", "beach.jpg")
    assert parse_key(path.variant_key("thumb")) == (path, "thumb")
    for key in [
        "alice/trip/beach.jpg",
        "alice/trip/beach.jpg/other",
        "a/b/c/d/original",
        "../b/c/original",
    ]:
        with pytest.raises(InvalidNameError):
            parse_key(key)


def test_image_ids_are_32_lowercase_hex() -> None:
    assert validate_image_id("0123456789abcdef" * 2)
    for bad in ["", "X" * 32, "0" * 31, "0" * 33, "../" + "0" * 29, 5]:
        with pytest.raises(InvalidNameError):
            validate_image_id(bad)


@given(st.text(max_size=300))
def test_any_accepted_segment_stays_one_safe_key_segment(value: str) -> None:
    try:
        accepted = validate_segment("filename", value)
    except InvalidNameError:
        return
    assert accepted == value
    assert "/" not in accepted and accepted not in {".", ".."}
    assert accepted.isascii() and accepted.isprintable() and accepted.strip() == accepted
    key = ImagePath("owner", "album", accepted).original_key
    assert key.split("/") == ["owner", "album", accepted, "original"]
    assert parse_key(key) == (ImagePath("owner", "album", accepted), "original")
