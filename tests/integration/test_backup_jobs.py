"""The backup queue end to end: uploads through the real (moto) queue, the backup handler,
and an S3-compatible target reached over HTTP on loopback with its own credentials."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr

from lambdas.backup import handler as backup_handler
from lambdas.backup.crypto import MAGIC, SCHEME, read_header
from lambdas.shared import aws as shared_aws
from lambdas.shared import worker
from lambdas.shared.config import load_settings
from lambdas.shared.destinations import DestinationCredentials
from lambdas.shared.images import ImageRecord, ImageRepository
from lambdas.shared.observability import logger
from lambdas.shared.originals import store_upload
from lambdas.shared.producers import enqueue_backup_job
from pixflare.operations.backup_destinations import DestinationRequest, configure_destination
from pixflare.operations.backup_restore import BackupMismatchError, restore_backup, verify_backup
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import ALLOW_PRIVATE_ENDPOINTS, use_env
from tests.support.events import FakeLambdaContext, event_from_received
from tests.support.s3_target import S3Target

MIB = 1024 * 1024


@pytest.fixture(scope="session")
def target() -> Iterator[S3Target]:
    """One authenticated target per test process; each test uses its own owner prefix."""
    with S3Target(bucket="owner-backups", auth=True) as server:
        yield server


@pytest.fixture
def log_text(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Every log line of the test, formatted as the function would print it (JSON, extras too)."""
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        return "\n".join(logger.registered_formatter.format(r) for r in caplog.records)

    return text


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    # The target is a loopback HTTP server: the operator's opt-in allows it
    # (tests/integration/test_backup_endpoint_policy.py runs with it off).
    use_env(monkeypatch, {**aws.env("backup"), **ALLOW_PRIVATE_ENDPOINTS})
    return aws


@pytest.fixture
def kms_calls(env: Resources) -> list[tuple[str, dict[str, Any]]]:
    """(operation, parameters) of every GenerateDataKey and Decrypt our KMS client makes,
    whichever of its timeout variants makes it (the calls still reach moto)."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    for client in shared_aws.client("kms").every_client():
        for operation in ("GenerateDataKey", "Decrypt"):
            client.meta.events.register(f"provide-client-params.kms.{operation}", hook)
    return calls


def jpeg(size: int, seed: int = 1) -> bytes:
    return b"\xff\xd8\xff\xe0" + random.Random(seed).randbytes(size - 4)


def set_destination(
    target: S3Target,
    owner: str,
    *,
    encrypt: bool = False,
    secret: str | None = None,
    check: bool = True,
    prefix: str = "pixflare",
) -> None:
    configure_destination(
        load_settings(),
        DestinationRequest(
            owner=owner,
            bucket=target.bucket,
            endpoint_url=target.endpoint,
            prefix=prefix,
            path_style=True,
            encrypt=encrypt,
            credentials=DestinationCredentials(
                target.access_key_id, SecretStr(secret or target.secret_access_key)
            ),
        ),
        check=check,
    )


def run_backup_queue(env: Resources) -> list[dict[str, Any]]:
    """Receive what is on the backup queue and hand it to the handler, as Lambda's poller does."""
    messages = receive_all(env.queue_urls["backup"])
    if not messages:
        return []
    response = backup_handler.handler(
        event_from_received(messages, env.queue_arns["backup"]), FakeLambdaContext(60_000)
    )
    return list(response["batchItemFailures"])


def record(env: Resources, image_id: str) -> ImageRecord:
    found = ImageRepository(env.tables["images"]).get(image_id)
    assert found is not None
    return found


def drain_variant_queue(env: Resources) -> None:
    receive_all(env.queue_urls["variant"])


def test_plain_backup_is_synced_and_restores_byte_identical(
    env: Resources, target: S3Target, tmp_path: Path
) -> None:
    # Given an owner with a plain destination, and an uploaded photo
    set_destination(target, "plain-owner")
    data = jpeg(300_000)
    upload = store_upload(
        load_settings(), data, owner="plain-owner", album="trip", filename="beach.jpg"
    )
    assert upload.backup_message_id is not None

    # When the backup queue runs
    assert run_backup_queue(env) == []

    # Then the original sits at {prefix}{owner}/{album}/{filename}, unchanged
    key = "pixflare/plain-owner/trip/beach.jpg"
    stored, metadata = target.read(key)
    assert stored == data
    assert metadata["pixflare-sha256"] == upload.record.sha256
    assert metadata["pixflare-size"] == str(len(data))
    assert metadata["pixflare-encryption"] == "none"
    # and the record says synced, with where, when and what
    synced = record(env, upload.record.image_id)
    assert synced.backup_status == "synced"
    assert synced.backup["key"] == key
    assert synced.backup["sha256"] == upload.record.sha256
    assert synced.backup["bytes"] == len(data)
    assert synced.backup["etag"]
    assert synced.backup["synced_at"]
    # and the by-backup-state index lists it as synced
    images = ImageRepository(env.tables["images"])
    listed, _ = images.by_backup_state("plain-owner", "synced", limit=10)
    assert [r.image_id for r in listed] == [upload.record.image_id]
    assert images.by_backup_state("plain-owner", "pending", limit=10)[0] == []

    # and a restore gives back the same bytes
    out = tmp_path / "restored.jpg"
    check = restore_backup(load_settings(), upload.record.image_id, out)
    assert out.read_bytes() == data
    assert check.sha256 == upload.record.sha256
    assert not check.encrypted


def test_encrypted_multipart_backup_restores_byte_identical(
    env: Resources, target: S3Target, tmp_path: Path
) -> None:
    # Given an owner who wants encryption, and a photo larger than one 8 MiB part
    set_destination(target, "secret-owner", encrypt=True)
    data = jpeg(9 * MIB + 12_345, seed=2)
    upload = store_upload(
        load_settings(), data, owner="secret-owner", album="a", filename="big.jpg"
    )

    assert run_backup_queue(env) == []

    # Then the destination holds ciphertext in our format, never the photo itself
    key = "pixflare/secret-owner/a/big.jpg"
    stored, metadata = target.read(key)
    assert stored.startswith(MAGIC)
    assert data[1000:1064] not in stored
    assert metadata["pixflare-encryption"] == SCHEME
    assert metadata["pixflare-sha256"] == upload.record.sha256
    synced = record(env, upload.record.image_id)
    assert synced.backup_status == "synced"
    assert synced.backup["encrypted"] is True
    assert synced.backup["stored_bytes"] == len(stored)
    # and restore decrypts it back to the very same bytes
    out = tmp_path / "big.jpg"
    check = restore_backup(load_settings(), upload.record.image_id, out)
    assert check.encrypted
    assert out.read_bytes() == data


def test_tampered_encrypted_backup_fails_verify_and_restore_leaves_no_file(
    env: Resources, target: S3Target, tmp_path: Path
) -> None:
    set_destination(target, "tamper-owner", encrypt=True)
    data = jpeg(200_000, seed=3)
    upload = store_upload(load_settings(), data, owner="tamper-owner", album="a", filename="t.jpg")
    assert run_backup_queue(env) == []
    image_id = upload.record.image_id
    assert verify_backup(load_settings(), image_id).sha256 == upload.record.sha256

    # Given someone flips one byte of the stored ciphertext
    key = "pixflare/tamper-owner/a/t.jpg"
    stored, metadata = target.read(key)
    spoiled = bytearray(stored)
    spoiled[len(spoiled) // 2] ^= 0x01
    target.write(key, bytes(spoiled), metadata)

    # Then verify says so, and restore writes nothing
    with pytest.raises(Exception, match="failed authentication"):
        verify_backup(load_settings(), image_id)
    out = tmp_path / "t.jpg"
    with pytest.raises(Exception, match="failed authentication"):
        restore_backup(load_settings(), image_id, out)
    assert list(tmp_path.iterdir()) == []

    # And a truncated one likewise
    target.write(key, stored[: len(stored) - 70_000], metadata)
    with pytest.raises(Exception, match=r"failed authentication|truncated"):
        restore_backup(load_settings(), image_id, out)
    assert list(tmp_path.iterdir()) == []


def test_data_key_is_bound_to_its_owner_and_image_as_documented(
    env: Resources, target: S3Target, kms_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    # Given an encrypted backup (docs/backup-format.md: the data key's encryption
    # context is {"owner": owner, "imageId": imageId}, on wrap and on unwrap)
    owner = "bound-owner"
    set_destination(target, owner, encrypt=True)
    upload = store_upload(
        load_settings(), jpeg(70_000, seed=5), owner=owner, album="a", filename="k.jpg"
    )
    image_id = upload.record.image_id
    kms_calls.clear()  # the destination's credentials were encrypted while setting it
    assert run_backup_queue(env) == []
    stored, metadata = target.read(f"pixflare/{owner}/a/k.jpg")
    header, _ = read_header(io.BytesIO(stored).read)
    assert metadata["pixflare-image-id"] == image_id
    documented = {"owner": owner, "imageId": metadata["pixflare-image-id"]}

    # Then the backup asked KMS for one AES-256 data key with exactly that context
    generated = [params for op, params in kms_calls if op == "GenerateDataKey"]
    assert [p["EncryptionContext"] for p in generated] == [documented]
    assert [p["KeySpec"] for p in generated] == ["AES_256"]
    # and decrypted nothing but the destination's credentials (context: the owner alone)
    decrypted = [params for op, params in kms_calls if op == "Decrypt"]
    assert all(p["EncryptionContext"] == {"owner": owner} for p in decrypted)
    assert all(p["CiphertextBlob"] != header.wrapped_key for p in decrypted)

    # When the backup is read back
    kms_calls.clear()
    assert verify_backup(load_settings(), image_id).sha256 == upload.record.sha256

    # Then the wrapped key was unwrapped once, with exactly the same context
    unwrapped = [
        params
        for op, params in kms_calls
        if op == "Decrypt" and params["CiphertextBlob"] == header.wrapped_key
    ]
    assert [p["EncryptionContext"] for p in unwrapped] == [documented]
    assert [p["KeyId"] for p in unwrapped] == [header.key_id]

    # And the wrapped key opens with the documented context only: not for the owner
    # alone, nor under another image's id
    kms = boto3.client("kms", region_name=REGION)
    assert (
        len(
            kms.decrypt(CiphertextBlob=header.wrapped_key, EncryptionContext=documented)[
                "Plaintext"
            ]
        )
        == 32
    )
    for wrong in ({"owner": owner}, {"owner": owner, "imageId": "0" * 32}):
        with pytest.raises(ClientError, match="InvalidCiphertextException"):
            kms.decrypt(CiphertextBlob=header.wrapped_key, EncryptionContext=wrong)


def test_plain_backup_that_changed_fails_restore(
    env: Resources, target: S3Target, tmp_path: Path
) -> None:
    set_destination(target, "changed-owner")
    upload = store_upload(
        load_settings(), jpeg(5000), owner="changed-owner", album="a", filename="c.jpg"
    )
    assert run_backup_queue(env) == []
    key = "pixflare/changed-owner/a/c.jpg"
    stored, metadata = target.read(key)
    target.write(key, stored[:-1] + b"\x00", metadata)

    out = tmp_path / "c.jpg"
    with pytest.raises(BackupMismatchError, match="does not match"):
        restore_backup(load_settings(), upload.record.image_id, out)
    assert not out.exists()


def test_delete_removes_the_copy_and_marks_the_record(env: Resources, target: S3Target) -> None:
    set_destination(target, "del-owner")
    upload = store_upload(
        load_settings(), jpeg(4000), owner="del-owner", album="a", filename="d.jpg"
    )
    assert run_backup_queue(env) == []
    key = "pixflare/del-owner/a/d.jpg"
    assert key in target.objects()

    # When a delete job runs (it carries album and filename: the record may be gone)
    for _ in range(2):  # and again: already gone counts as done
        enqueue_backup_job(
            load_settings(),
            image_id=upload.record.image_id,
            owner="del-owner",
            action="delete",
            album="a",
            filename="d.jpg",
        )
        assert run_backup_queue(env) == []

    assert key not in target.objects()
    deleted = record(env, upload.record.image_id)
    assert deleted.backup_status == "deleted"
    images = ImageRepository(env.tables["images"])
    assert images.by_backup_state("del-owner", "synced", limit=10)[0] == []

    # and a late upload job for the deleted image does not bring the copy back
    enqueue_backup_job(
        load_settings(), image_id=upload.record.image_id, owner="del-owner", action="upload"
    )
    assert run_backup_queue(env) == []
    assert key not in target.objects()


def test_delete_with_the_record_gone_still_removes_the_copy(
    env: Resources, target: S3Target
) -> None:
    set_destination(target, "gone-owner")
    upload = store_upload(
        load_settings(), jpeg(4000), owner="gone-owner", album="a", filename="g.jpg"
    )
    assert run_backup_queue(env) == []
    ImageRepository(env.tables["images"]).delete(upload.record)

    enqueue_backup_job(
        load_settings(),
        image_id=upload.record.image_id,
        owner="gone-owner",
        action="delete",
        album="a",
        filename="g.jpg",
    )
    assert run_backup_queue(env) == []
    assert "pixflare/gone-owner/a/g.jpg" not in target.objects()


def test_owner_without_destination_is_acknowledged_and_untouched(env: Resources) -> None:
    upload = store_upload(load_settings(), jpeg(1000), owner="nobody", album="a", filename="n.jpg")
    assert upload.backup_message_id is None  # upload queues nothing for them
    enqueue_backup_job(
        load_settings(), image_id=upload.record.image_id, owner="nobody", action="upload"
    )
    assert run_backup_queue(env) == []
    assert record(env, upload.record.image_id).backup_status == "none"


def test_missing_original_fails_permanently_with_the_reason(
    env: Resources, target: S3Target
) -> None:
    set_destination(target, "lost-owner")
    upload = store_upload(
        load_settings(), jpeg(1000), owner="lost-owner", album="a", filename="l.jpg"
    )
    import boto3

    boto3.client("s3").delete_object(Bucket=env.bucket, Key=upload.record.original_key)

    # The job is acknowledged (no retry can bring the original back)...
    assert run_backup_queue(env) == []
    failed = record(env, upload.record.image_id)
    # ...and the record says failed, and why
    assert failed.backup_status == "failed"
    assert "NoSuchKey" in failed.backup["last_error"]
    images = ImageRepository(env.tables["images"])
    assert [r.image_id for r in images.by_backup_state("lost-owner", "failed", limit=10)[0]] == [
        upload.record.image_id
    ]


def test_wrong_credentials_retry_then_dead_letter_without_leaking_the_secret(
    env: Resources,
    target: S3Target,
    monkeypatch: pytest.MonkeyPatch,
    log_text: Callable[[], str],
) -> None:
    # Backoff of zero lets the test re-receive at once instead of waiting 30 s, 60 s, ...
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)
    wrong_secret = "wrong-secret-" + "Zq8" * 10
    # Given a destination saved (unchecked) with a secret the target does not know
    set_destination(target, "denied-owner", secret=wrong_secret, check=False)
    upload = store_upload(
        load_settings(), jpeg(2000), owner="denied-owner", album="a", filename="x.jpg"
    )

    # When the queue is run until SQS gives up on the message
    receives = 0
    for _ in range(6):  # bounded; SQS moves it to the DLQ on the receive after the third
        messages = receive_all(env.queue_urls["backup"])
        if not messages:
            break
        receives += 1
        response = backup_handler.handler(
            event_from_received(messages, env.queue_arns["backup"]), FakeLambdaContext(60_000)
        )
        assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
            upload.backup_message_id
        ]

    # Then it was tried three times and now waits in the DLQ for an operator
    assert receives == 3
    dead = receive_all(env.dlq_urls["backup"])
    assert [m["MessageId"] for m in dead] == [upload.backup_message_id]
    # and the record says pending, with a clear last error
    pending = record(env, upload.record.image_id)
    assert pending.backup_status == "pending"
    assert "SignatureDoesNotMatch" in pending.backup["last_error"]
    # and the secret appeared in no log line
    logs = log_text()
    assert "SignatureDoesNotMatch" in logs
    assert wrong_secret not in logs
    assert wrong_secret not in str(pending.backup)


def test_destination_down_then_back(
    env: Resources, monkeypatch: pytest.MonkeyPatch, log_text: Callable[[], str]
) -> None:
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)
    with S3Target(bucket="flaky", auth=False) as flaky:
        set_destination(flaky, "flaky-owner")
        upload = store_upload(
            load_settings(), jpeg(3000), owner="flaky-owner", album="a", filename="f.jpg"
        )
        # Given the destination goes down
        flaky.stop()

        # When the job runs: it fails, transiently, and the record says why
        assert [f["itemIdentifier"] for f in run_backup_queue(env)] == [upload.backup_message_id]
        waiting = record(env, upload.record.image_id)
        assert waiting.backup_status == "pending"
        assert "connect" in waiting.backup["last_error"].lower()

        # And when it is back (same address), the retry syncs the image
        flaky.start()
        assert run_backup_queue(env) == []
        synced = record(env, upload.record.image_id)
        assert synced.backup_status == "synced"
        assert "last_error" not in synced.backup
        assert flaky.objects() == {"pixflare/flaky-owner/a/f.jpg": 3000}
        logs = log_text()
        assert "backup synced" in logs
        assert flaky.secret_access_key not in logs


def test_no_part_starts_without_time_for_a_single_attempt_destination_call(
    env: Resources, target: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdas.backup.pipeline import PART_SECONDS
    from lambdas.backup.remote import REMOTE_TIMEOUTS

    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)
    set_destination(target, "late-owner")
    upload = store_upload(
        load_settings(), jpeg(2000), owner="late-owner", album="a", filename="late.jpg"
    )
    # (the threshold comes from the destination client's own timeouts)
    assert REMOTE_TIMEOUTS[1].worst_case_seconds() < PART_SECONDS

    # Given an invocation with less time left than one destination call may take
    messages = receive_all(env.queue_urls["backup"])
    late = FakeLambdaContext(int(PART_SECONDS * 1000) - 1000)
    response = backup_handler.handler(event_from_received(messages, env.queue_arns["backup"]), late)

    # Then the job is handed back untouched, and a later delivery with time syncs it
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        upload.backup_message_id
    ]
    assert "late-owner/a/late.jpg" not in "".join(target.objects())
    assert run_backup_queue(env) == []
    assert record(env, upload.record.image_id).backup_status == "synced"
