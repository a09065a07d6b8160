"""Streaming upload to an S3-compatible destination with bounded memory.

A stream shorter than one part goes up with one PutObject; a longer one as a
multipart upload of ``part_size`` parts with at most ``max_in_flight`` parts being
sent at once. Memory is bounded by part size x (parts in flight + the one being
filled), whatever the object's size. Any failure aborts the multipart upload, so a
half-written object never appears at the destination.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lambdas.shared import aws
from lambdas.shared.errors import aws_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
PART_SIZE = 8 * MIB
MAX_PARTS_IN_FLIGHT = 2
READ_CHUNK = 1 * MIB
MAX_PARTS = 10_000  # S3's limit; 8 MiB parts allow objects up to ~78 GiB


# glibc raises its mmap threshold each time a large block is freed, after which our
# 1-8 MiB buffers come from fragmenting heap arenas and RSS creeps up by tens of MB.
# A fixed threshold keeps them mmapped, so each one goes back to the OS when freed.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 512 * 1024


@functools.cache
def keep_large_buffers_mmapped() -> bool:
    """Pin glibc's mmap threshold (once per process); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


class Readable(Protocol):
    def read(self, amt: int = ..., /) -> bytes: ...


def iter_body(body: Readable, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """Chunks of a response body (or file) until it ends."""
    while True:
        chunk = body.read(chunk_size)
        if not chunk:
            return
        yield chunk


def read_body(body: Readable, context: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """Chunks of a response body; a reset or timeout mid-stream becomes one of our errors."""
    chunks = iter_body(body, chunk_size)
    while True:
        with aws_errors(context):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk


def iter_parts(chunks: Iterable[bytes], part_size: int) -> Iterator[bytes]:
    """Regroup chunks into parts of exactly ``part_size`` (the last one shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= part_size:
            with memoryview(buffer) as view:
                part = bytes(view[:part_size])  # one copy, not a slice and then a copy
            del buffer[:part_size]
            yield part
            del part
    if buffer:
        yield bytes(buffer)


@dataclass(frozen=True)
class UploadResult:
    etag: str
    bytes_sent: int
    parts: int


def upload_stream(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    chunks: Iterable[bytes],
    metadata: dict[str, str],
    content_type: str,
    before_commit: Callable[[], None] = lambda: None,
    check_time: Callable[[], None] = lambda: None,
    part_size: int = PART_SIZE,
    max_in_flight: int = MAX_PARTS_IN_FLIGHT,
) -> UploadResult:
    """Upload a stream; ``before_commit`` runs once the stream is consumed, before the
    object becomes visible, and may raise to abandon it (a checksum mismatch, say)."""
    keep_large_buffers_mmapped()
    parts = iter_parts(chunks, part_size)
    first = next(parts, b"")
    check_time()
    second = next(parts, None)
    where = f"destination {bucket}/{key}"
    if second is None:
        before_commit()
        with aws_errors(f"put {where}"):
            response = client.put_object(
                Bucket=bucket,
                Key=key,
                Body=first,
                Metadata=metadata,
                ContentType=content_type,
                ContentLength=len(first),
            )
        return UploadResult(_etag(response), len(first), 1)

    with aws_errors(f"start multipart upload to {where}"):
        upload_id = client.create_multipart_upload(
            Bucket=bucket, Key=key, Metadata=metadata, ContentType=content_type
        )["UploadId"]
    head = [first, second]
    del first, second  # the part list is their only holder, so each is freed once sent
    try:
        completed, sent = _send_parts(
            client, bucket, key, upload_id, head, parts, check_time, max_in_flight
        )
        before_commit()
        with aws_errors(f"complete multipart upload to {where}"):
            completion = client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": completed},  # type: ignore[typeddict-item]
            )
    except BaseException:
        _abort(client, bucket, key, upload_id)
        raise
    return UploadResult(_etag(completion), sent, len(completed))


def _send_parts(
    client: S3Client,
    bucket: str,
    key: str,
    upload_id: str,
    head: list[bytes],
    rest: Iterator[bytes],
    check_time: Callable[[], None],
    max_in_flight: int,
) -> tuple[list[dict[str, Any]], int]:
    etags: dict[int, str] = {}
    sent = 0

    def send(number: int, body: bytes) -> tuple[int, str]:
        with aws_errors(f"upload part {number} of {bucket}/{key}"):
            response = client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=len(body),
            )
        return number, _etag(response)

    def collect(done: set[Future[tuple[int, str]]]) -> None:
        for future in done:
            number, etag = future.result()  # re-raises the part's failure
            etags[number] = etag

    with ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="backup-part") as pool:
        in_flight: set[Future[tuple[int, str]]] = set()
        try:
            for number, body in enumerate(_chain(head, rest), start=1):
                if number > MAX_PARTS:
                    raise ValueError(f"object needs more than {MAX_PARTS} parts")
                check_time()
                while len(in_flight) >= max_in_flight:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(done)
                in_flight.add(pool.submit(aws.in_this_context(send), number, body))
                sent += len(body)
                del body
            done, in_flight = wait(in_flight)
            collect(done)
        finally:
            for future in in_flight:
                future.cancel()
    return [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)], sent


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    while head:
        yield head.pop(0)  # drop our reference as soon as the part is handed on
    yield from rest


def _abort(client: S3Client, bucket: str, key: str, upload_id: str) -> None:
    try:
        with aws_errors(f"abort multipart upload to {bucket}/{key}"):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception:  # the destination may be the thing that is down; its lifecycle rules clean up
        return


def _etag(response: Any) -> str:
    return str(response.get("ETag", "")).strip('"')
