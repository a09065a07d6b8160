"""The images bucket: every S3 access pattern of the functions, once.

Logic asks for objects by what they are (an original no larger than a limit, a
variant to store, a page of the listing, keys to delete); the calls, their error
adaptation (lambdas.shared.errors) and their limits live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lambdas.shared import aws
from lambdas.shared.errors import PermanentError, TransientError, aws_errors

DELETE_OBJECTS_LIMIT = 1000  # keys per DeleteObjects


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    etag: str


@dataclass(frozen=True)
class ObjectHead:
    """An object's first bytes and what S3 says of it."""

    head: bytes
    etag: str
    size: int
    content_type: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class ListedObject:
    key: str
    last_modified: datetime


@dataclass(frozen=True)
class ListingPage:
    objects: list[ListedObject]
    truncated: bool


class ImagesBucket:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def read(self, key: str, *, limit: int) -> StoredObject:
        """The object's bytes and ETag; PermanentError (before reading it) when it is
        larger than ``limit``."""
        with aws_errors(f"get {key}"):
            response = aws.s3().get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                declared = int(response.get("ContentLength", 0))
                if declared > limit:
                    raise PermanentError(f"{key} is {declared} bytes, over the {limit} byte limit")
                # Read one byte past the limit so a body longer than declared is caught too.
                data = body.read(limit + 1)
            finally:
                body.close()
        if len(data) > limit:
            raise PermanentError(f"{key} is over the {limit} byte limit")
        return StoredObject(data, str(response.get("ETag", "")).strip('"'))

    def head(self, key: str, *, nbytes: int) -> ObjectHead:
        """The object's first ``nbytes`` bytes and its ETag, size and metadata, without
        reading the rest (HeadObject, then a ranged GetObject pinned to the same ETag, so
        both describe one object even if it is replaced in between: a replaced object is
        a TransientError, and the retry reads the new one). NotFoundError when it is gone."""
        with aws_errors(f"head {key}"):
            described = aws.s3().head_object(Bucket=self.bucket, Key=key)
        etag = str(described.get("ETag", "")).strip('"')
        size = int(described.get("ContentLength", 0))
        data = b""
        if size > 0:  # a ranged GET of an empty object is an error (416)
            with aws_errors(f"get the first bytes of {key}"):
                response = aws.s3().get_object(
                    Bucket=self.bucket,
                    Key=key,
                    Range=f"bytes=0-{max(0, nbytes - 1)}",
                    IfMatch=described.get("ETag", "*"),
                )
                body = response["Body"]
                try:
                    data = body.read(nbytes)
                finally:
                    body.close()
        return ObjectHead(
            head=data,
            etag=etag,
            size=size,
            content_type=str(described.get("ContentType", "")),
            metadata={str(k).lower(): str(v) for k, v in described.get("Metadata", {}).items()},
        )

    def open(self, key: str, what: str) -> Any:
        """The object's streaming body (the caller reads and closes it)."""
        with aws_errors(what):
            return aws.s3().get_object(Bucket=self.bucket, Key=key)["Body"]

    def put(
        self, key: str, data: bytes, *, content_type: str, cache_control: str, image_id: str
    ) -> None:
        with aws_errors(f"put {key}"):
            aws.s3().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                CacheControl=cache_control,
                Metadata={"image-id": image_id},
            )

    def list_page(self, *, after: str | None, page_size: int) -> ListingPage:
        """Up to ``page_size`` keys after ``after``, in key order."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": page_size}
        if after:
            kwargs["StartAfter"] = after
        with aws_errors(f"list {self.bucket}"):
            response = aws.s3().list_objects_v2(**kwargs)
        objects = [
            ListedObject(str(obj["Key"]), obj["LastModified"])
            for obj in response.get("Contents", [])
        ]
        return ListingPage(objects, bool(response.get("IsTruncated")))

    def delete(self, keys: Iterable[str]) -> int:
        """Delete these keys (absent keys count as deleted, as S3 reports them); returns
        how many. A key S3 could not delete is a TransientError: the caller's step runs
        again, and deleting twice is harmless."""
        unique = sorted(set(keys))
        for chunk in _chunks(unique, DELETE_OBJECTS_LIMIT):
            with aws_errors(f"delete {len(chunk)} objects"):
                response = aws.s3().delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise TransientError(
                    f"{len(errors)} of {len(chunk)} objects not deleted "
                    f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message')})"
                )
        return len(unique)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
