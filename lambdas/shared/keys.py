"""The object key layout, and the checks every segment passes before it becomes part of a key.

Objects live at ``{owner}/{album}/{filename}/original`` and
``{owner}/{album}/{filename}/{variant}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lambdas.shared.errors import PermanentError

ORIGINAL = "original"
VARIANT_NAMES: tuple[str, ...] = (
    "w128",
    "w256",
    "w512",
    "w1024",
    "w1536",
    "w2048",
    "thumb",
    "og-image",
)
LEAF_NAMES = frozenset((ORIGINAL, *VARIANT_NAMES))

# Starts with a letter or digit (so never "." or ".." or a dotfile or "-flag"), then
# letters, digits, dot, dash, underscore. ASCII only: keys must mean the same thing in
# every S3-compatible store and every shell.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_LENGTH = {"owner": 64, "album": 128, "filename": 200}
IMAGE_ID = re.compile(r"[0-9a-f]{32}")


class InvalidNameError(PermanentError):
    """A name that may not become part of an object key."""


def validate_segment(kind: str, value: object) -> str:
    """Return ``value`` if it is a safe key segment of this kind, else raise InvalidNameError."""
    limit = MAX_LENGTH.get(kind, 128)
    if not isinstance(value, str):
        raise InvalidNameError(f"{kind} must be a string")
    if value == "":
        raise InvalidNameError(f"{kind} is empty")
    if len(value) > limit:
        raise InvalidNameError(f"{kind} is longer than {limit} characters")
    if value in {".", ".."}:
        raise InvalidNameError(f"{kind} may not be {value!r}")
    if "/" in value or "\\" in value:
        raise InvalidNameError(f"{kind} may not contain a slash")
    if not value.isascii():
        raise InvalidNameError(f"{kind} must be ASCII (letters, digits, . _ -)")
    if not _SEGMENT.fullmatch(value):
        raise InvalidNameError(
            f"{kind} {value!r} must start with a letter or digit and contain only "
            "letters, digits, '.', '_' and '-'"
        )
    return value


def validate_image_id(value: object) -> str:
    if not isinstance(value, str) or not IMAGE_ID.fullmatch(value):
        raise InvalidNameError("imageId must be 32 lowercase hex characters")
    return value


@dataclass(frozen=True, slots=True)
class ImagePath:
    """Where one image's objects live. Construction validates every segment."""

    owner: str
    album: str
    filename: str

    def __post_init__(self) -> None:
        validate_segment("owner", self.owner)
        validate_segment("album", self.album)
        validate_segment("filename", self.filename)

    @property
    def prefix(self) -> str:
        return f"{self.owner}/{self.album}/{self.filename}/"

    @property
    def original_key(self) -> str:
        return self.prefix + ORIGINAL

    def variant_key(self, variant: str) -> str:
        if variant not in VARIANT_NAMES:
            raise InvalidNameError(f"unknown variant {variant!r}")
        return self.prefix + variant

    def all_keys(self) -> list[str]:
        return [self.original_key, *(self.variant_key(v) for v in VARIANT_NAMES)]

    @property
    def claim(self) -> str:
        """The path as one string, used as the uniqueness claim in the images table."""
        return f"{self.owner}/{self.album}/{self.filename}"


def parse_key(key: str) -> tuple[ImagePath, str]:
    """Split ``owner/album/filename/leaf`` back into its parts (validated)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[3] not in LEAF_NAMES:
        raise InvalidNameError(f"not an image object key: {key!r}")
    return ImagePath(parts[0], parts[1], parts[2]), parts[3]
