"""Hostile input, cross-cutting: each bad image, message or name gets a clear recorded
reason, is not retried forever, does not fail its batch-mates, and changes nothing else.

The engine's own rejection rules are in tests/unit/test_variant_engine.py, the message
and name rules in tests/unit/test_messages.py / test_keys.py / test_domain_hostnames.py;
here they run through upload, the real (moto) queues and the handlers, in batches with
good work, and the whole store is compared before and after.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from PIL import Image

from lambdas.backup import handler as backup_handler
from lambdas.domain import handler as domain_handler
from lambdas.shared import worker
from lambdas.shared.config import load_settings
from lambdas.shared.errors import PermanentError
from lambdas.shared.images import ImageRepository
from lambdas.shared.keys import VARIANT_NAMES
from lambdas.shared.originals import store_upload
from lambdas.variant import handler as variant_handler
from pixflare.operations import domains as admin
from tests.support.aws_resources import REGION, Resources
from tests.support.env import ALLOW_PRIVATE_ENDPOINTS, use_env
from tests.support.faults import drive_queue, queue_depth

OWNER = "mallory"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def photo(w: int = 64, h: int = 40) -> Image.Image:
    image = Image.new("RGB", (w, h), (200, 40, 40))
    image.paste((30, 60, 220), (0, 0, w // 2, h))
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A 70-byte PNG whose header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Main-Class: Evil\n")
    return out.getvalue()


HTML = b"<html><script>alert(document.cookie)</script></html>"


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return encode(photo(60, 30), "JPEG", exif=exif.tobytes())


# name -> (bytes, filename, expected outcome). "ready" means the hostile part is harmless
# (re-encoded away or ignored); "failed" means a permanent failure with a reason.
HOSTILE_IMAGES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "truncated JPEG": (lambda: encode(photo(400, 300), "JPEG")[:600], "t.jpg", "failed"),
    "truncated PNG": (
        lambda: encode(photo(400, 300).effect_spread(4), "PNG")[:900],
        "t.png",
        "failed",
    ),
    "JPEG magic, then text": (
        lambda: b"\xff\xd8\xff\xe0just some text, not a picture\n" * 20,
        "text.jpg",
        "failed",
    ),
    "decompression bomb": (lambda: bomb_png(100_000, 100_000), "bomb.png", "failed"),
    "1 x 60000": (lambda: encode(Image.new("L", (1, 60_000), 128), "PNG"), "tall.png", "failed"),
    "JPEG + HTML polyglot": (lambda: encode(photo(), "JPEG") + HTML, "poly.jpg", "ready"),
    "GIFAR (GIF + JAR)": (lambda: encode(photo(), "GIF") + zip_bytes(), "gifar.gif", "ready"),
    "corrupt ICC profile": (
        lambda: encode(photo(), "JPEG", icc_profile=b"\x00\x00\x01\x00garbage" * 8),
        "icc.jpg",
        "ready",
    ),
    "EXIF orientation 9": (lambda: exif_orientation(9), "orient.jpg", "ready"),
}


def snapshot(env: Resources) -> dict[str, Any]:
    """Everything a user could see: every object (with its ETag) and every item."""
    s3 = boto3.client("s3", region_name=REGION)
    ddb = boto3.client("dynamodb", region_name=REGION)
    objects = {
        o["Key"]: o["ETag"]
        for o in s3.list_objects_v2(Bucket=env.bucket, MaxKeys=1000).get("Contents", [])
    }
    items: dict[str, Any] = {}
    for name in ("images", "domains", "destinations", "stats"):
        for item in ddb.scan(TableName=env.tables[name])["Items"]:
            key = item.get("pk", item.get("hostname", item.get("owner", {})))
            items[f"{name}:{json.dumps(key, sort_keys=True)}:{item.get('sk')}"] = item
    return {"objects": objects, "items": items}


def dlq_reasons(env: Resources, queue: str) -> dict[str, str]:
    """Body -> recorded reason for every message in the queue's DLQ (bounded)."""
    sqs = boto3.client("sqs", region_name=REGION)
    found: dict[str, str] = {}
    for _ in range(10):
        got = sqs.receive_message(
            QueueUrl=env.dlq_urls[queue], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            reason = m.get("MessageAttributes", {}).get("pixflare-reason")
            redriven = "(moved by the redrive policy)"
            found[m["Body"]] = reason.get("StringValue", redriven) if reason else redriven
    return found


def test_hostile_images_in_one_batch_with_good_ones(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, aws.env("variant"))
    settings = load_settings()
    images = ImageRepository(aws.tables["images"])
    # Given a zero-byte upload: refused at the door, nothing stored
    before = snapshot(aws)
    with pytest.raises(PermanentError, match="empty"):
        store_upload(settings, b"", owner=OWNER, album="a", filename="zero.jpg")
    assert snapshot(aws) == before and queue_depth(aws.queue_urls["variant"]) == 0
    # And text named .jpg: its first bytes are no image's, so it is refused there too
    with pytest.raises(PermanentError, match="not an image"):
        store_upload(
            settings, b"just some text\n" * 20, owner=OWNER, album="a", filename="text.jpg"
        )
    assert snapshot(aws) == before and queue_depth(aws.queue_urls["variant"]) == 0

    # And every hostile image uploaded between two good ones
    good = [
        store_upload(settings, encode(photo(), "JPEG"), owner=OWNER, album="a", filename="g1.jpg"),
        store_upload(settings, encode(photo(), "PNG"), owner=OWNER, album="a", filename="g2.png"),
    ]
    hostile = {
        case: store_upload(settings, make(), owner=OWNER, album="a", filename=filename)
        for case, (make, filename, _) in HOSTILE_IMAGES.items()
    }
    before = snapshot(aws)

    # When they all arrive in one batch
    result = drive_queue(
        aws.queue_urls["variant"],
        aws.queue_arns["variant"],
        variant_handler.handler,
        batch_size=10,
        max_rounds=3,
    )

    # Then one delivery each, nothing retried, nothing left queued or dead-lettered
    assert result.rounds == 2  # one batch of 10, then one of the last message
    assert result.retried == 0 and len(result.done) == 2 + len(HOSTILE_IMAGES)
    assert queue_depth(aws.queue_urls["variant"]) == 0
    assert queue_depth(aws.dlq_urls["variant"]) == 0
    after = snapshot(aws)
    expected_new: set[str] = set()
    for upload in good:
        record = images.get(upload.record.image_id)
        assert record is not None and record.variants_status == "ready"
        expected_new |= {record.path.variant_key(n) for n in VARIANT_NAMES}
    for case, upload in hostile.items():
        record = images.get(upload.record.image_id)
        assert record is not None
        outcome = HOSTILE_IMAGES[case][2]
        assert record.variants_status == outcome, (case, record.error)
        if outcome == "failed":
            # a clear reason, and no variant objects
            assert record.error and len(record.error) > 10, case
            assert record.variants_ready == []
        else:
            assert record.error is None
            expected_new |= {record.path.variant_key(n) for n in VARIANT_NAMES}
            for name in VARIANT_NAMES:
                body = (
                    boto3.client("s3", region_name=REGION)
                    .get_object(Bucket=aws.bucket, Key=record.path.variant_key(name))["Body"]
                    .read()
                )
                # re-encoded: the appended payload does not survive into any variant
                assert HTML not in body and b"META-INF" not in body, (case, name)
    # And nothing else changed: the originals are untouched, only variants were added
    assert set(after["objects"]) - set(before["objects"]) == expected_new
    assert {k: after["objects"][k] for k in before["objects"]} == before["objects"]
    assert set(after["items"]) == set(before["items"])


def test_orientation_nine_is_ignored_not_applied(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, aws.env("variant"))
    upload = store_upload(
        load_settings(), exif_orientation(9), owner=OWNER, album="a", filename="o.jpg"
    )
    drive_queue(
        aws.queue_urls["variant"], aws.queue_arns["variant"], variant_handler.handler, batch_size=5
    )
    record = ImageRepository(aws.tables["images"]).get(upload.record.image_id)
    assert record is not None
    assert (record.variants["w2048"].width, record.variants["w2048"].height) == (60, 30)


def near_limit_body(owner: str) -> str:
    body = json.dumps({"v": 1, "imageId": "a" * 32, "owner": owner, "pad": ""})
    return body.replace('"pad": ""', '"pad": "' + "x" * (262_000 - len(body)) + '"')


def bad_bodies(owner: str) -> dict[str, str]:
    return {
        "invalid JSON": '{"v": 1, "imageId": ',
        "not an object": "[1, 2, 3]",
        "unknown schema version": json.dumps({"v": 2, "imageId": "a" * 32, "owner": owner}),
        "missing fields": json.dumps({"v": 1}),
        "wrong field types": json.dumps({"v": 1, "imageId": 7, "owner": ["x"], "attempt": "1"}),
        "control characters": json.dumps({"v": 1, "imageId": "a" * 32, "owner": "ali\x00ce\n"}),
        "non-ASCII owner": json.dumps({"v": 1, "imageId": "a" * 32, "owner": "ålice‮"}),
        "path in owner": json.dumps({"v": 1, "imageId": "a" * 32, "owner": "../etc"}),
        "near 256 KiB": near_limit_body(owner),
    }


GOOD_AND_MISSING: dict[str, Callable[[str], dict[str, Any]]] = {
    # a message that is valid but names nothing: acknowledged, nothing created
    "variant": lambda owner: {"v": 1, "imageId": "f" * 32, "owner": owner},
    "backup": lambda owner: {
        "v": 1,
        "imageId": "f" * 32,
        "owner": owner,
        "action": "upload",
        "requestedAt": "2025-01-01T00:00:00Z",
    },
    "domain": lambda owner: {
        "v": 1,
        "hostname": "nothing.example.com",
        "owner": owner,
        "attempt": 1,
    },
}
HANDLERS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "variant": variant_handler.handler,
    "backup": backup_handler.handler,
    "domain": domain_handler.handler,
}


@pytest.mark.parametrize("queue", list(HANDLERS))
def test_bad_messages_go_to_the_dlq_with_a_reason_and_spare_their_batch(
    aws: Resources, monkeypatch: pytest.MonkeyPatch, queue: str
) -> None:
    use_env(monkeypatch, {**aws.env(queue), "CUSTOM_DOMAIN_FALLBACK_CNAME": "cname.pixflare.test"})
    sqs = boto3.client("sqs", region_name=REGION)
    # Given a good upload (its variant job is the batch-mate on the variant queue)
    good = store_upload(
        load_settings(), encode(photo(), "JPEG"), owner=OWNER, album="a", filename="ok.jpg"
    )
    if queue != "variant":
        sqs.purge_queue(QueueUrl=aws.queue_urls["variant"])
    before = snapshot(aws)
    bodies = bad_bodies(OWNER)
    for body in bodies.values():
        sqs.send_message(QueueUrl=aws.queue_urls[queue], MessageBody=body)
    sqs.send_message(
        QueueUrl=aws.queue_urls[queue], MessageBody=json.dumps(GOOD_AND_MISSING[queue](OWNER))
    )

    # When the queue is worked until it is empty (bounded)
    drive_queue(
        aws.queue_urls[queue],
        aws.queue_arns[queue],
        HANDLERS[queue],
        batch_size=10,
        max_rounds=8,
        remaining_ms=60_000,
    )

    # Then every bad body is in the DLQ, each with a reason that says what is wrong
    reasons = dlq_reasons(aws, queue)
    assert set(reasons) == set(bodies.values())
    by_case = {case: reasons[body] for case, body in bodies.items()}
    assert "not JSON" in by_case["invalid JSON"]
    assert "schema version 2" in by_case["unknown schema version"]
    assert "owner" in by_case["path in owner"]
    assert "owner" in by_case["control characters"]
    # and nothing is left on the queue: no message retried forever
    assert queue_depth(aws.queue_urls[queue]) == 0
    # And the batch-mates were done: the good image is ready (variant queue) and the
    # message naming no record was acknowledged without creating anything
    after = snapshot(aws)
    if queue == "variant":
        record = ImageRepository(aws.tables["images"]).get(good.record.image_id)
        assert record is not None and record.variants_status == "ready"
        assert set(after["items"]) == set(before["items"])
    else:
        assert after == before


BAD_NAMES = [
    ("owner", ".."),
    ("owner", ""),
    ("owner", "a/b"),
    ("owner", "x" * 300),
    ("owner", "ålice"),
    ("album", "."),
    ("album", "a/../../b"),
    ("album", "con\x00"),
    ("filename", ".."),
    ("filename", "x/original"),
    ("filename", "f" * 1000),
    ("filename", "日本.jpg"),
    ("filename", "\u202egpj.exe"),
]


def test_bad_names_at_upload_change_nothing(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One store for every case (the moto setup is the slow part); each is checked alone.
    use_env(monkeypatch, aws.env("variant"))
    before = snapshot(aws)
    for field, value in BAD_NAMES:
        names = {"owner": OWNER, "album": "a", "filename": "f.jpg", field: value}
        with pytest.raises(PermanentError) as refused:
            store_upload(load_settings(), encode(photo(), "JPEG"), **names)
        assert field in str(refused.value), (field, value)
        assert snapshot(aws) == before, (field, value)
        assert queue_depth(aws.queue_urls["variant"]) == 0


REFUSED_HOSTNAMES = [
    ("192.0.2.10", "IP address"),
    ("[2001:db8::1]", "IP address"),
    ("example.com", "apex"),
    ("*.example.com", "wildcard"),
    ("a" * 64 + ".example.com", "64 characters, over 63"),
    ("img.pixflare.test", "own domain"),
    ("cname.pixflare.test.", "own domain"),
]


def test_refused_hostnames_store_and_queue_nothing(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(
        monkeypatch,
        {**aws.env("domain"), "CUSTOM_DOMAIN_FALLBACK_CNAME": "cname.pixflare.test"},
    )
    before = snapshot(aws)
    for hostname, reason in REFUSED_HOSTNAMES:
        assert reason, hostname  # an empty pattern would match any message
        with pytest.raises(PermanentError, match=reason):
            admin.add_domain(load_settings(), hostname, OWNER)
        assert snapshot(aws) == before, hostname
        assert queue_depth(aws.queue_urls["domain"]) == 0


def test_another_owners_domain_is_left_as_it_was(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(
        monkeypatch,
        {**aws.env("domain"), "CUSTOM_DOMAIN_FALLBACK_CNAME": "cname.pixflare.test"},
    )
    admin.add_domain(load_settings(), "img.alice.example.com", "alice")
    before = snapshot(aws)
    depth = queue_depth(aws.queue_urls["domain"])
    with pytest.raises(PermanentError):
        admin.add_domain(load_settings(), "IMG.Alice.Example.COM.", OWNER)
    assert snapshot(aws) == before
    assert queue_depth(aws.queue_urls["domain"]) == depth


def give_mallory_a_destination(**where: Any) -> None:
    """The attacker's own backup destination, saved without the reachability check."""
    from pydantic import SecretStr

    from lambdas.shared.destinations import DestinationCredentials
    from pixflare.operations.backup_destinations import DestinationRequest, configure_destination

    configure_destination(
        load_settings(),
        DestinationRequest(
            owner=OWNER,
            bucket="mallory-backups",
            credentials=DestinationCredentials("mallory-key-id", SecretStr("s" * 20)),
            **where,
        ),
        check=False,
    )


def test_backup_job_naming_another_owners_image_changes_nothing(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (mallory's destination is a loopback address: the operator's opt-in lets it be saved)
    use_env(monkeypatch, {**aws.env("backup"), **ALLOW_PRIVATE_ENDPOINTS})
    # Given alice's image, and mallory with a backup destination of her own
    victim = store_upload(
        load_settings(), encode(photo(), "JPEG"), owner="alice", album="a", filename="v.jpg"
    )
    give_mallory_a_destination(endpoint_url="http://127.0.0.1:9", prefix="p", path_style=True)
    before = snapshot(aws)
    # When mallory's queue carries a backup job naming alice's image
    forged = {
        "v": 1,
        "imageId": victim.record.image_id,
        "owner": OWNER,
        "action": "upload",
        "requestedAt": "2025-01-01T00:00:00Z",
    }
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queue_urls["backup"], MessageBody=json.dumps(forged)
    )
    result = drive_queue(
        aws.queue_urls["backup"],
        aws.queue_arns["backup"],
        backup_handler.handler,
        batch_size=10,
        remaining_ms=60_000,
    )
    # Then it is refused for good, and alice's record is exactly as it was
    assert result.retried == 0 and len(result.done) == 1
    assert snapshot(aws) == before


def test_backup_delete_naming_another_owners_image_leaves_it_alone(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, aws.env("backup"))
    # Given alice's image, and mallory with a reachable backup destination of her own
    victim = store_upload(
        load_settings(), encode(photo(), "JPEG"), owner="alice", album="a", filename="v.jpg"
    )
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="mallory-backups")
    give_mallory_a_destination()
    before = snapshot(aws)
    # When mallory's queue carries a backup delete naming alice's image
    forged = {
        "v": 1,
        "imageId": victim.record.image_id,
        "owner": OWNER,
        "action": "delete",
        "album": "a",
        "filename": "v.jpg",
        "requestedAt": "2025-01-01T00:00:00Z",
    }
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=aws.queue_urls["backup"], MessageBody=json.dumps(forged)
    )
    drive_queue(
        aws.queue_urls["backup"],
        aws.queue_arns["backup"],
        backup_handler.handler,
        batch_size=10,
        remaining_ms=60_000,
    )
    # Then alice's record is exactly as it was (its backup not marked deleted)
    kept = ImageRepository(aws.tables["images"]).get(victim.record.image_id)
    assert kept is not None
    assert kept.backup_status == "none"
    assert snapshot(aws) == before
