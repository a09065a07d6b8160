"""Read a backup back from the owner's destination: decrypt when needed, check, and keep or compare.

A restore writes to a temporary file beside the target and renames it into place
only once the SHA-256 and size match what was recorded at upload, so a bad or
tampered backup never leaves a file that looks like the image. An existing file
is replaced only when asked (``overwrite``); otherwise the restore is refused
before anything is read, and again at the rename should one have appeared meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lambdas.backup.crypto import SCHEME, decrypt_chunks
from lambdas.backup.pipeline import META_ENCRYPTION, META_SHA256, META_SIZE, unwrap_data_key
from lambdas.backup.remote import remote_client
from lambdas.backup.transfer import read_body
from lambdas.shared.config import Settings
from lambdas.shared.destinations import DestinationRepository, decrypt_credentials
from lambdas.shared.endpoint_policy import EndpointPolicy
from lambdas.shared.errors import NotFoundError, PermanentError, aws_errors
from lambdas.shared.images import ImageRecord, ImageRepository


class BackupMismatchError(PermanentError):
    """The backup read back is not the image that was backed up."""


class TargetExistsError(PermanentError):
    """The file to restore to exists, and overwriting it was not asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists")
        self.path = path


@dataclass(frozen=True)
class BackupCheck:
    image_id: str
    key: str
    bucket: str
    encrypted: bool
    sha256: str
    size: int
    expected_sha256: str
    expected_size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "imageId": self.image_id,
            "bucket": self.bucket,
            "key": self.key,
            "encrypted": self.encrypted,
            "sha256": self.sha256,
            "bytes": self.size,
            "ok": True,
        }


def read_backup(settings: Settings, image_id: str, sink: Callable[[bytes], None]) -> BackupCheck:
    """Stream the image's backup into ``sink`` (decrypted), then check it; raises on mismatch."""
    record = ImageRepository(settings.require("images_table")).get(image_id)
    if record is None:
        raise NotFoundError(f"no image {image_id}")
    destination = DestinationRepository(settings.require("destinations_table")).get(record.owner)
    if destination is None:
        raise NotFoundError(f"owner {record.owner} has no backup destination")
    key = destination.object_key(record.owner, record.album, record.filename)
    client = remote_client(
        destination, decrypt_credentials(destination), EndpointPolicy.from_settings(settings)
    )
    where = f"{destination.bucket}/{key}"
    try:
        with aws_errors(f"read backup {where}"):
            response = client.get_object(Bucket=destination.bucket, Key=key)
    except NotFoundError:
        raise NotFoundError(f"no backup of image {image_id} at {where}") from None
    body = response["Body"]
    metadata = {k.lower(): v for k, v in response.get("Metadata", {}).items()}
    scheme = metadata.get(META_ENCRYPTION, "none")
    try:
        chunks: Iterable[bytes] = read_body(body, f"read backup {where}")
        if scheme == SCHEME:
            chunks = decrypt_chunks(chunks, unwrap_data_key(record.owner, record.image_id))
        elif scheme != "none":
            raise BackupMismatchError(f"backup {where} uses unknown encryption {scheme!r}")
        digest = hashlib.sha256()
        size = 0
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            sink(chunk)
    finally:
        body.close()
    expected_sha, expected_size = _expected(record, metadata)
    actual = digest.hexdigest()
    if actual != expected_sha or size != expected_size:
        raise BackupMismatchError(
            f"backup {where} does not match image {image_id}: {size} bytes with SHA-256 "
            f"{actual}, expected {expected_size} bytes with SHA-256 {expected_sha}"
        )
    return BackupCheck(
        image_id=image_id,
        key=key,
        bucket=destination.bucket,
        encrypted=scheme == SCHEME,
        sha256=actual,
        size=size,
        expected_sha256=expected_sha,
        expected_size=expected_size,
    )


def _expected(record: ImageRecord, metadata: dict[str, str]) -> tuple[str, int]:
    # The record is the authority; object metadata only fills in for records that lack it.
    sha = record.sha256 or metadata.get(META_SHA256, "")
    size = record.bytes or int(metadata.get(META_SIZE, "0") or 0)
    if not sha:
        raise BackupMismatchError(f"image {record.image_id} has no recorded SHA-256 to check")
    return sha, size


def verify_backup(settings: Settings, image_id: str) -> BackupCheck:
    """Read the whole backup and compare it, writing nothing."""
    return read_backup(settings, image_id, lambda _chunk: None)


def _write_all(out: BinaryIO, chunk: bytes) -> None:
    out.write(chunk)


def restore_backup(
    settings: Settings, image_id: str, destination_path: Path, *, overwrite: bool = False
) -> BackupCheck:
    """Write the image's backup to ``destination_path`` atomically, or leave nothing there.
    An existing file there: TargetExistsError unless ``overwrite``."""
    directory = destination_path.parent
    if not directory.is_dir():
        raise PermanentError(f"directory {directory} does not exist")
    if destination_path.is_dir():
        raise PermanentError(f"{destination_path} is a directory; give a file name")
    if destination_path.exists() and not overwrite:
        raise TargetExistsError(destination_path)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{destination_path.name}.", suffix=".partial", dir=directory
    )
    temp_path = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            check = read_backup(settings, image_id, lambda chunk: _write_all(out, chunk))
            out.flush()
            os.fsync(out.fileno())
        _move_into_place(temp_path, destination_path, overwrite=overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()
    return check


def _move_into_place(temp_path: Path, target: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp_path, target)
        return
    try:
        # A hard link never replaces an existing file: no window for one to appear.
        os.link(temp_path, target)
    except FileExistsError:
        raise TargetExistsError(target) from None
    except OSError:
        # A file system without hard links: check, then rename.
        if target.exists():
            raise TargetExistsError(target) from None
        os.replace(temp_path, target)
