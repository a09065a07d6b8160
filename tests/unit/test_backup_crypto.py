"""The streaming AEAD of encrypted backups: round trips, and every way a stream can be spoiled."""

from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdas.backup.crypto import (
    MAGIC,
    SEGMENT_SIZE,
    TAG_SIZE,
    DecryptionError,
    Header,
    SegmentEncryptor,
    ciphertext_size,
    decrypt_chunks,
    encrypt_chunks,
    new_header,
)

KEY = bytes(range(32))
WRAPPED = b"wrapped-data-key-from-kms"
SEALED = SEGMENT_SIZE + TAG_SIZE


def header() -> Header:
    return new_header("arn:aws:kms:us-east-1:123456789012:key/test", WRAPPED)


def encrypt(data: bytes, chunk: int = 10_000, hdr: Header | None = None) -> bytes:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(encrypt_chunks(pieces, KEY, hdr or header()))


def decrypt(blob: bytes, chunk: int = 7_777, key: bytes = KEY) -> bytes:
    seen: list[Header] = []

    def unwrap(h: Header) -> bytes:
        seen.append(h)
        assert h.wrapped_key == WRAPPED
        return key

    pieces = [blob[i : i + chunk] for i in range(0, len(blob), chunk)]
    out = b"".join(decrypt_chunks(pieces, unwrap))
    assert len(seen) == 1
    return out


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    """Header bytes and sealed segments of a ciphertext."""
    key_id_length = struct.unpack(">H", blob[16:18])[0]
    wrapped_at = 18 + key_id_length
    wrapped_length = struct.unpack(">H", blob[wrapped_at : wrapped_at + 2])[0]
    header_length = wrapped_at + 2 + wrapped_length
    body = blob[header_length:]
    return blob[:header_length], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


DATA = random.Random(7).randbytes(3 * SEGMENT_SIZE + 1234)


@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 2 * SEGMENT_SIZE, len(DATA)]
)
def test_round_trip_at_segment_edges(size: int) -> None:
    data = DATA[:size]
    blob = encrypt(data)
    assert blob.startswith(MAGIC)
    head, _ = split(blob)
    assert len(blob) == ciphertext_size(size, len(head))
    assert decrypt(blob) == data


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=3 * SEGMENT_SIZE + 5),
    write_chunk=st.integers(min_value=1, max_value=200_000),
    read_chunk=st.integers(min_value=1, max_value=200_000),
)
def test_any_chunking_round_trips(size: int, write_chunk: int, read_chunk: int) -> None:
    data = DATA[:size]
    assert decrypt(encrypt(data, write_chunk), read_chunk) == data


def test_same_plaintext_encrypts_differently_each_time() -> None:
    # A fresh nonce prefix per object: equal images never give equal backups.
    assert encrypt(DATA) != encrypt(DATA)


def test_plaintext_does_not_appear_in_ciphertext() -> None:
    data = b"a very recognisable line of text\n" * 5000
    assert data[:64] not in encrypt(data)


def test_flipped_byte_in_a_segment_is_rejected() -> None:
    blob = bytearray(encrypt(DATA))
    head, _ = split(bytes(blob))
    blob[len(head) + SEALED + 100] ^= 0x01
    with pytest.raises(DecryptionError, match="segment 1 failed authentication"):
        decrypt(bytes(blob))


def test_flipped_tag_byte_is_rejected() -> None:
    blob = bytearray(encrypt(DATA))
    blob[-1] ^= 0x80
    with pytest.raises(DecryptionError, match="final segment"):
        decrypt(bytes(blob))


def test_altered_header_is_rejected() -> None:
    # The nonce prefix lives in the header, and the whole header is authenticated.
    blob = bytearray(encrypt(DATA))
    blob[10] ^= 0x01
    with pytest.raises(DecryptionError):
        decrypt(bytes(blob))


def test_truncation_at_a_segment_boundary_is_rejected() -> None:
    head, segments = split(encrypt(DATA))
    with pytest.raises(DecryptionError, match="final segment"):
        decrypt(head + b"".join(segments[:2]))


def test_truncation_inside_a_segment_is_rejected() -> None:
    blob = encrypt(DATA)
    with pytest.raises(DecryptionError):
        decrypt(blob[:-100])


def test_truncation_to_the_header_is_rejected() -> None:
    head, _ = split(encrypt(DATA))
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt(head)
    with pytest.raises(DecryptionError, match="inside the header"):
        decrypt(head[:-3])


def test_reordered_segments_are_rejected() -> None:
    head, segments = split(encrypt(DATA))
    swapped = [segments[1], segments[0], *segments[2:]]
    with pytest.raises(DecryptionError, match="segment 0"):
        decrypt(head + b"".join(swapped))


def test_duplicated_segment_is_rejected() -> None:
    head, segments = split(encrypt(DATA))
    with pytest.raises(DecryptionError):
        decrypt(head + b"".join([segments[0], *segments]))


def test_data_appended_after_the_last_segment_is_rejected() -> None:
    blob = encrypt(DATA[: SEGMENT_SIZE // 2])
    with pytest.raises(DecryptionError):
        decrypt(blob + os.urandom(TAG_SIZE + 10))


def test_segments_spliced_from_another_object_are_rejected() -> None:
    # Same key even (a worst case): the other object's nonce prefix and header differ.
    head_a, segments_a = split(encrypt(DATA))
    _, segments_b = split(encrypt(DATA))
    with pytest.raises(DecryptionError):
        decrypt(head_a + b"".join([segments_a[0], segments_b[1], *segments_a[2:]]))


def test_wrong_key_is_rejected() -> None:
    with pytest.raises(DecryptionError):
        decrypt(encrypt(DATA), key=bytes(32))


def test_not_a_backup_is_rejected() -> None:
    with pytest.raises(DecryptionError, match="bad magic"):
        decrypt(b"\xff\xd8\xff\xe0 a plain jpeg, not an encrypted backup")


def test_unknown_version_is_rejected() -> None:
    blob = bytearray(encrypt(b"hello"))
    blob[4] = 2
    with pytest.raises(DecryptionError, match="version 2"):
        decrypt(bytes(blob))


def test_encryptor_holds_back_a_full_segment_until_it_knows_it_is_not_last() -> None:
    encryptor = SegmentEncryptor(KEY, header())
    assert encryptor.update(b"").startswith(MAGIC)  # the header goes out first
    # Exactly one segment buffered: it may be the last, so nothing sealed yet.
    assert encryptor.update(DATA[:SEGMENT_SIZE]) == b""
    # One more byte proves it is not the last.
    assert len(encryptor.update(DATA[SEGMENT_SIZE : SEGMENT_SIZE + 1])) == SEALED
    assert len(encryptor.finish()) == 1 + TAG_SIZE
