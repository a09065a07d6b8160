"""`pixflare upload` and `pixflare status` as a person reads them (moto resources)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import boto3
import pytest

from lambdas.shared.config import load_settings
from lambdas.shared.images import ImageRepository
from lambdas.shared.keys import ImagePath
from lambdas.shared.originals import store_upload
from pixflare.commands import images
from pixflare.context import CommandContext, CommandError
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("variant"))
    return aws


def pixflare(*argv: str) -> str:
    """Run one subcommand without --json; returns what it printed."""
    parser = argparse.ArgumentParser(prog="pixflare")
    images.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    args.func(args, CommandContext(load_settings(), stdout=out, stderr=io.StringIO()))
    return out.getvalue()


def test_status_names_the_labels(env: Resources) -> None:
    # Given an image labelled by the AI stage
    record = store_upload(load_settings(), JPEG, owner="alice", album="a", filename="p.jpg").record
    ai = {
        "labels": [{"name": "Dog", "confidence": 0.97}, {"name": "Grass", "confidence": 0.8}],
        "dominant_colors": [],
        "model": "rekognition",
        "at": "2026-01-01T00:00:00Z",
    }
    ImageRepository(env.tables["images"]).update(record.image_id, {"ai": ai})
    # When its status is shown to a person
    text = pixflare("status", record.image_id)
    # Then the labels read as names, not as raw data
    assert "ai: Dog, Grass" in text
    assert "confidence" not in text


def test_status_shows_why_labelling_failed(env: Resources) -> None:
    record = store_upload(load_settings(), JPEG, owner="alice", album="a", filename="p.jpg").record
    ai = {"error": "cannot prepare the image", "model": "rekognition", "at": "x"}
    ImageRepository(env.tables["images"]).update(record.image_id, {"ai": ai})
    assert "ai: failed (cannot prepare the image)" in pixflare("status", record.image_id)


def test_upload_of_several_files_reports_those_stored_before_one_is_refused(
    env: Resources, tmp_path: Path
) -> None:
    # Given b.jpg already taken in the album
    store_upload(load_settings(), JPEG, owner="alice", album="a", filename="b.jpg")
    first, second = tmp_path / "a.jpg", tmp_path / "b.jpg"
    first.write_bytes(JPEG)
    second.write_bytes(JPEG)
    # When a.jpg and b.jpg are uploaded together
    with pytest.raises(CommandError) as refused:
        pixflare("upload", str(first), str(second), "--owner", "alice", "--album", "a")
    # Then the error names the refused file and the image id a.jpg was stored as
    message = str(refused.value)
    claimed = ImageRepository(env.tables["images"]).claimed_paths(
        [ImagePath("alice", "a", "a.jpg")]
    )
    assert "alice/a/b.jpg already exists" in message
    assert f"a.jpg -> {claimed['alice/a/a.jpg']}" in message


# -- restore and purge ----------------------------------------------------------------------
class Terminal(io.StringIO):
    """Standard input as a person at a terminal types it."""

    def isatty(self) -> bool:
        return True


def test_restore_queues_the_variants_a_deleted_image_missed(env: Resources) -> None:
    # Given an image deleted before its variant job ran (the job skips deleted images)
    record = store_upload(load_settings(), JPEG, owner="alice", album="a", filename="p.jpg").record
    assert len(receive_all(env.queue_urls["variant"])) == 1  # consumed: skipped as deleted
    pixflare("delete", record.image_id)
    # When it is restored, its variants are queued again
    text = pixflare("restore", record.image_id)
    assert text.startswith(f"{record.image_id} restored: alice/a/p.jpg is back")
    assert "variants are queued again" in text
    [message] = receive_all(env.queue_urls["variant"])
    assert record.image_id in message["Body"]
    assert ImageRepository(env.tables["images"]).get(record.image_id).deleted_at is None  # type: ignore[union-attr]


def test_purge_asks_on_a_terminal_and_no_keeps_everything(
    env: Resources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = store_upload(load_settings(), JPEG, owner="alice", album="a", filename="p.jpg").record
    repository = ImageRepository(env.tables["images"])
    # Answered no: nothing removed
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    err = io.StringIO()
    parser = argparse.ArgumentParser(prog="pixflare")
    images.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["delete", record.image_id, "--purge"])
    with pytest.raises(CommandError, match="not purged: nothing was removed"):
        args.func(args, CommandContext(load_settings(), stdout=io.StringIO(), stderr=err))
    assert f"purge image {record.image_id} (alice/a/p.jpg, live, not deleted)" in err.getvalue()
    assert repository.get(record.image_id) is not None
    # Answered yes: the record, its claim and its objects are gone
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    text = pixflare("delete", record.image_id, "--purge")
    assert text.startswith(f"{record.image_id} purged (live image alice/a/p.jpg): its original")
    assert repository.get(record.image_id) is None
    assert repository.claimed_paths([record.path]) == {}
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=env.bucket)
    assert listing.get("KeyCount", 0) == 0


def test_yes_without_purge_is_an_argument_error(env: Resources) -> None:
    with pytest.raises(CommandError) as refused:
        pixflare("delete", "a" * 32, "--yes")
    assert refused.value.exit_code == 2
