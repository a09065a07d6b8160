"""Backups as a newcomer meets them (issue #18, points 2 and 8): the installed `pixflare`
script against a local stack, with a second S3 stand-in (a moto server on another
loopback port) as the owner's backup destination."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pixflare.local import samples
from pixflare.local.stack import LocalStack
from tests.support.console import on_stack
from tests.support.local_stack import started_stack, wait_until
from tests.support.s3_target import S3Target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory, "newcomer-backup") as running:
        yield running


@pytest.fixture(scope="module")
def target() -> Iterator[S3Target]:
    with S3Target(bucket="alice-backups", auth=True) as server:
        yield server


def backup_set(stack: LocalStack, target: S3Target, *options: str, as_json: bool = False) -> Any:
    return on_stack(
        stack,
        *(["--json"] if as_json else []),
        "backup",
        "set",
        "--owner",
        "alice",
        "--endpoint",
        target.endpoint,
        "--bucket",
        target.bucket,
        "--access-key-id",
        target.access_key_id,
        "--secret-access-key-stdin",
        "--path-style",
        *options,
        stdin=target.secret_access_key + "\n",
    )


def progress(stack: LocalStack) -> dict[str, int]:
    done = on_stack(stack, "--json", "backup", "show", "--owner", "alice")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["images"])


def wait_backed_up(stack: LocalStack, count: int) -> dict[str, int]:
    def backed_up() -> dict[str, int] | None:
        counts = progress(stack)
        return counts if counts["backedUp"] == count else None

    return wait_until(backed_up, f"{count} images backed up")


def test_images_uploaded_before_backup_set_are_backed_up(
    stack: LocalStack, target: S3Target, tmp_path: Path
) -> None:
    # Given alice uploaded two photos before she had a backup destination
    ids = []
    for index, sample in enumerate(samples.demo_samples()[:2]):
        photo = tmp_path / f"photo{index}.jpg"
        photo.write_bytes(sample.data)
        done = on_stack(stack, "--json", "upload", str(photo), "--owner", "alice", "--album", "t")
        assert done.returncode == 0, done.stderr
        ids.append(json.loads(done.stdout)["imageId"])

    # When she sets one, it says it queued both
    done = backup_set(stack, target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "queued 2 images for backup"

    # Then `backup show` comes to count both backed up, in plain words
    assert wait_backed_up(stack, 2) == {"backedUp": 2, "queued": 0, "failed": 0, "notYet": 0}
    shown = on_stack(stack, "backup", "show", "--owner", "alice")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "region: (default)" in lines
    assert "path-style: yes" in lines
    assert "prefix: (none)" in lines
    assert lines[-1] == "images: 2 backed up, 0 queued or in progress, 0 failed, 0 not yet queued"
    assert "True" not in shown.stdout and "region: \n" not in shown.stdout
    # and each backup verifies
    for image_id in ids:
        verified = on_stack(stack, "backup", "verify", image_id)
        assert verified.returncode == 0, verified.stderr
        assert "alice-backups/alice/t/photo" in verified.stdout and "matches" in verified.stdout

    # A re-set of the same destination (e.g. a new key) queues nothing again
    done = backup_set(stack, target, as_json=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["queued"], report["alreadyBackedUp"]) == (0, 2)

    # A different destination (here: another prefix) needs everything again
    done = backup_set(stack, target, "--prefix", "v2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "queued 2 images for backup"
    wait_backed_up(stack, 2)
    assert {key for key in target.objects() if key.startswith("v2/")} == {
        "v2/alice/t/photo0.jpg",
        "v2/alice/t/photo1.jpg",
    }

    # Restoring onto an existing file is refused, naming the file and --force ...
    existing = tmp_path / "photo0.jpg"
    before = existing.read_bytes()
    refused = on_stack(stack, "backup", "restore", ids[1], "--to", str(existing))
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"pixflare: {existing} exists; pass --force to overwrite it"
    ]
    assert existing.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    # ... and with --force it is replaced by the checked backup
    forced = on_stack(stack, "backup", "restore", ids[1], "--to", str(existing), "--force")
    assert forced.returncode == 0, forced.stderr
    assert existing.read_bytes() == samples.demo_samples()[1].data
