"""What an IMAGE_ID argument may be: a full id, or a unique prefix of at least 8."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import pytest

from lambdas.shared.images import ImageRecord, ImageRepository
from pixflare.operations.images import ImageIdError, resolve_image_id

TWINS = ["abcdef01" + "0" * 24, "abcdef01" + "1" * 24]


class Repository:
    """The two reads resolution makes, over a fixed set of records."""

    def __init__(self, prefixed: list[str], existing: Iterable[str]) -> None:
        self.prefixed = prefixed
        self.existing = set(existing)

    def ids_with_prefix(self, prefix: str) -> list[str]:
        return [i for i in self.prefixed if i.startswith(prefix)]

    def get_many(self, image_ids: Iterable[str]) -> list[ImageRecord]:
        return [
            ImageRecord(
                image_id=i,
                owner="o",
                album="a",
                filename=f"{i[8]}.jpg",
                bucket="b",
                original_key="k",
                created_at="2026-01-01T00:00:00Z",
            )
            for i in image_ids
            if i in self.existing
        ]


def resolve(value: str, repository: Any = None) -> str:
    def lookup() -> ImageRepository:
        if repository is None:
            raise AssertionError("looked up a value that needs no lookup")
        return cast(ImageRepository, repository)

    return resolve_image_id(value, lookup)


def test_a_full_id_is_taken_as_it_is_without_a_lookup() -> None:
    assert resolve("F" * 32) == "f" * 32


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not-an-id", "not an image id"),
        ("a" * 33, "not an image id"),
        ("", "not an image id"),
        ("abcdef0", "at least 8 characters"),
    ],
)
def test_a_malformed_or_short_id_fails_without_a_lookup(value: str, says: str) -> None:
    with pytest.raises(ImageIdError, match=says):
        resolve(value)


def test_a_unique_prefix_is_the_full_id() -> None:
    assert resolve("abcdef011", Repository(TWINS, TWINS)) == TWINS[1]


def test_an_ambiguous_prefix_names_every_match() -> None:
    with pytest.raises(ImageIdError) as caught:
        resolve("abcdef01", Repository(TWINS, TWINS))
    assert str(caught.value) == (
        f"image id prefix abcdef01 is ambiguous: {TWINS[0]} (o/a/0.jpg), "
        f"{TWINS[1]} (o/a/1.jpg); give more characters"
    )


def test_an_entry_whose_record_is_gone_does_not_count() -> None:
    assert resolve("abcdef01", Repository(TWINS, TWINS[:1])) == TWINS[0]
    with pytest.raises(ImageIdError, match="no image id starts with abcdef01"):
        resolve("abcdef01", Repository(TWINS, []))


def test_an_unknown_prefix_says_where_older_images_are_found() -> None:
    with pytest.raises(ImageIdError, match="found by their full id, or with `pixflare list"):
        resolve("12345678", Repository([], []))
