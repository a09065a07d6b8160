"""Streaming authenticated encryption for backup objects (format: docs/backup-format.md).

AES-256-GCM over 64 KiB segments. Each segment's nonce is the object's random
7-byte prefix, a 4-byte segment counter and a 1-byte last-segment flag, and every
segment authenticates the whole header as associated data. So a reordered,
dropped, duplicated or altered segment fails its tag, and a stream cut at a segment
boundary fails too: its final segment was sealed without the last flag.

Pure: bytes in, bytes out. The data key comes from the caller (KMS GenerateDataKey
in the backup job); the wrapped key travels in the header.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lambdas.shared.errors import PermanentError

MAGIC = b"PXFB"
VERSION = 1
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
KEY_SIZE = 32
MAX_KEY_ID_BYTES = 2048
MAX_WRAPPED_KEY_BYTES = 4096
MAX_SEGMENTS = 2**32
# magic, version, segment size, nonce prefix, key id length
_FIXED = struct.Struct(">4sBI7sH")
_LENGTH = struct.Struct(">H")
# The encryption a backup object's metadata names, so restore knows what to expect.
SCHEME = "pxfb1-aes256gcm-64k"


class DecryptionError(PermanentError):
    """The ciphertext is not what was written: tampered, truncated, reordered or the wrong key."""


@dataclass(frozen=True)
class Header:
    key_id: str
    wrapped_key: bytes
    nonce_prefix: bytes
    segment_size: int = SEGMENT_SIZE

    def encode(self) -> bytes:
        key_id = self.key_id.encode()
        if len(key_id) > MAX_KEY_ID_BYTES:
            raise ValueError("key id too long for the header")
        if not 0 < len(self.wrapped_key) <= MAX_WRAPPED_KEY_BYTES:
            raise ValueError("wrapped key length out of range")
        if len(self.nonce_prefix) != NONCE_PREFIX_SIZE:
            raise ValueError("nonce prefix must be 7 bytes")
        return b"".join(
            (
                _FIXED.pack(MAGIC, VERSION, self.segment_size, self.nonce_prefix, len(key_id)),
                key_id,
                _LENGTH.pack(len(self.wrapped_key)),
                self.wrapped_key,
            )
        )


def new_header(key_id: str, wrapped_key: bytes) -> Header:
    return Header(key_id=key_id, wrapped_key=wrapped_key, nonce_prefix=os.urandom(7))


def read_header(read: Callable[[int], bytes]) -> tuple[Header, bytes]:
    """Read and check a header through ``read(n)``; returns it and its exact bytes."""
    fixed = _read_exactly(read, _FIXED.size)
    magic, version, segment_size, nonce_prefix, key_id_length = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise DecryptionError("not a Pixflare encrypted backup (bad magic)")
    if version != VERSION:
        raise DecryptionError(f"unsupported backup format version {version}")
    if segment_size != SEGMENT_SIZE:
        raise DecryptionError(f"unsupported segment size {segment_size}")
    if key_id_length > MAX_KEY_ID_BYTES:
        raise DecryptionError("header key id length out of range")
    key_id = _read_exactly(read, key_id_length)
    length_bytes = _read_exactly(read, _LENGTH.size)
    (wrapped_length,) = _LENGTH.unpack(length_bytes)
    if not 0 < wrapped_length <= MAX_WRAPPED_KEY_BYTES:
        raise DecryptionError("header wrapped key length out of range")
    wrapped = _read_exactly(read, wrapped_length)
    try:
        key_id_text = key_id.decode()
    except UnicodeDecodeError:
        raise DecryptionError("header key id is not UTF-8") from None
    header = Header(key_id_text, wrapped, nonce_prefix, segment_size)
    return header, fixed + key_id + length_bytes + wrapped


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:  # bounded: each round reads at least one byte or stops
        chunk = read(wanted)
        if not chunk:
            raise DecryptionError("ciphertext ends inside the header")
        parts.append(chunk)
        wanted -= len(chunk)
    return b"".join(parts)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= MAX_SEGMENTS:
        raise ValueError("too many segments for one object")
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def ciphertext_size(plaintext_size: int, header_size: int) -> int:
    """Exact encrypted size: header + every segment + one tag per segment."""
    segments = max(1, -(-plaintext_size // SEGMENT_SIZE))
    return header_size + plaintext_size + segments * TAG_SIZE


class SegmentEncryptor:
    """Feed plaintext in any chunk sizes; get ciphertext out, header first.

    The newest full segment is held back until more data (or ``finish``) shows
    whether it is the last one, since the last flag is part of its nonce.
    """

    def __init__(self, data_key: bytes, header: Header) -> None:
        if len(data_key) != KEY_SIZE:
            raise ValueError("data key must be 32 bytes (AES-256)")
        self._aead = AESGCM(data_key)
        self._header = header
        self._header_bytes = header.encode()
        self._buffer = bytearray()
        self._counter = 0
        self._started = False
        self._finished = False

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("encryptor already finished")
        out: list[bytes] = []
        if not self._started:
            out.append(self._header_bytes)
            self._started = True
        self._buffer += data
        size = SEGMENT_SIZE
        taken = 0
        # Strictly more than one segment buffered: the first one cannot be the last.
        while len(self._buffer) - taken > size:
            segment = bytes(self._buffer[taken : taken + size])
            out.append(self._seal(segment, last=False))
            taken += size
        if taken:
            del self._buffer[:taken]
        return b"".join(out)

    def finish(self) -> bytes:
        if self._finished:
            raise ValueError("encryptor already finished")
        head = b"" if self._started else self._header_bytes
        self._started = True
        self._finished = True
        last = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return head + last

    def _seal(self, segment: bytes, *, last: bool) -> bytes:
        nonce = _nonce(self._header.nonce_prefix, self._counter, last)
        self._counter += 1
        return self._aead.encrypt(nonce, segment, self._header_bytes)


class SegmentDecryptor:
    """Feed ciphertext after the header in any chunk sizes; get verified plaintext out.

    Nothing is returned before its segment's tag checks; ``finish`` fails unless the
    stream ended with a segment sealed as the last one.
    """

    def __init__(self, data_key: bytes, header: Header, header_bytes: bytes) -> None:
        if len(data_key) != KEY_SIZE:
            raise DecryptionError("data key must be 32 bytes (AES-256)")
        self._aead = AESGCM(data_key)
        self._nonce_prefix = header.nonce_prefix
        self._header_bytes = header_bytes
        self._buffer = bytearray()
        self._counter = 0
        self._finished = False

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise DecryptionError("data after the last segment")
        self._buffer += data
        size = SEGMENT_SIZE + TAG_SIZE
        out: list[bytes] = []
        taken = 0
        # Keep at least one sealed segment back: only the end of input says which is last.
        while len(self._buffer) - taken > size:
            out.append(self._open(bytes(self._buffer[taken : taken + size]), last=False))
            taken += size
        if taken:
            del self._buffer[:taken]
        return b"".join(out)

    def finish(self) -> bytes:
        if self._finished:
            raise DecryptionError("decryptor already finished")
        self._finished = True
        if len(self._buffer) < TAG_SIZE:
            raise DecryptionError("ciphertext truncated: no final segment")
        plain = self._open(bytes(self._buffer), last=True)
        self._buffer.clear()
        return plain

    def _open(self, sealed: bytes, *, last: bool) -> bytes:
        try:
            nonce = _nonce(self._nonce_prefix, self._counter, last)
        except ValueError:
            raise DecryptionError("too many segments") from None
        self._counter += 1
        try:
            return self._aead.decrypt(nonce, sealed, self._header_bytes)
        except InvalidTag:
            where = "final segment" if last else f"segment {self._counter - 1}"
            raise DecryptionError(
                f"{where} failed authentication: the backup was altered, truncated or reordered"
            ) from None


def encrypt_chunks(chunks: Iterable[bytes], data_key: bytes, header: Header) -> Iterator[bytes]:
    """Ciphertext for a stream of plaintext chunks (header included), lazily."""
    encryptor = SegmentEncryptor(data_key, header)
    for chunk in chunks:
        out = encryptor.update(chunk)
        if out:
            yield out
    yield encryptor.finish()


def decrypt_chunks(chunks: Iterable[bytes], unwrap: Callable[[Header], bytes]) -> Iterator[bytes]:
    """Plaintext for a stream of ciphertext chunks.

    ``unwrap`` turns the header's wrapped key into the data key (a KMS call in practice).
    """
    iterator = iter(chunks)
    pending = bytearray()

    def read(size: int) -> bytes:
        while len(pending) < size:
            nxt = next(iterator, None)
            if nxt is None:
                break
            pending.extend(nxt)
        taken = bytes(pending[:size])
        del pending[:size]
        return taken

    header, header_bytes = read_header(read)
    decryptor = SegmentDecryptor(unwrap(header), header, header_bytes)
    if pending:
        out = decryptor.update(bytes(pending))
        pending.clear()
        if out:
            yield out
    for chunk in iterator:
        out = decryptor.update(chunk)
        if out:
            yield out
    yield decryptor.finish()
