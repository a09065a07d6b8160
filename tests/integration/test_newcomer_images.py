"""Finding an image again and freeing a deleted image's name (issue #18, points 3 and 7):
the installed `pixflare` script against one local stack, as a user would run it."""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas.shared.clock import iso, utcnow
from lambdas.shared.images import ImageRecord, ImageRepository, iso_seconds, purge_due_at
from pixflare.local import samples
from pixflare.local.stack import LocalStack
from tests.support.console import on_stack, refused
from tests.support.local_stack import started_stack, use_stack_clients, wait_until
from tests.support.s3_target import S3Target

pytestmark = pytest.mark.slow

RETENTION_DAYS = 30  # the stack's default SOFT_DELETE_RETENTION_DAYS


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory, "newcomer-images") as running:
        yield running


@pytest.fixture(scope="module")
def target() -> Iterator[S3Target]:
    with S3Target(bucket="purge-backups", auth=True) as server:
        yield server


def photo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(samples.demo_samples()[0].data)
    return path


def upload(stack: LocalStack, *files: Path, owner: str, album: str) -> list[str]:
    done = on_stack(stack, "--json", "upload", *map(str, files), "--owner", owner, "--album", album)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    return [d["imageId"] for d in (document if isinstance(document, list) else [document])]


def test_an_id_prefix_of_eight_characters_finds_the_image(
    stack: LocalStack, tmp_path: Path
) -> None:
    [image_id] = upload(stack, photo(tmp_path, "p.jpg"), owner="ida", album="a")
    # The 8 characters the demo prints work wherever an IMAGE_ID is taken
    done = on_stack(stack, "status", image_id[:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{image_id}  ida/a/p.jpg")
    done = on_stack(stack, "--json", "views", "record", image_id[:10].upper())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imageId"] == image_id
    # Shorter than 8 says the minimum; an unknown prefix says where else to look
    assert "at least 8 characters" in refused(on_stack(stack, "status", image_id[:7]))
    unknown = refused(on_stack(stack, "delete", "0000000f"))
    assert "no image id starts with 0000000f" in unknown and "pixflare list" in unknown
    # and a full id is taken as it is, even one no prefix item knows
    assert "no image ffffffff" in refused(on_stack(stack, "status", "f" * 32))


def test_an_ambiguous_prefix_lists_the_matches(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two images whose ids share their first 8 characters (written as the API would)
    use_stack_clients(monkeypatch, stack)
    images = ImageRepository(stack.outputs["ImagesTableName"])
    shared = "5eed" + uuid.uuid4().hex[:4]
    ids = [shared + "0" + uuid.uuid4().hex[:23], shared + "1" + uuid.uuid4().hex[:23]]
    for image_id, name in zip(ids, ("one.jpg", "two.jpg"), strict=True):
        images.create(
            ImageRecord(
                image_id=image_id,
                owner="amos",
                album="twins",
                filename=name,
                bucket=stack.outputs["ImagesBucketName"],
                original_key=f"amos/twins/{name}/original",
                created_at=iso(utcnow()),
            )
        )
    # When a user gives the shared 8, the error names both, with owner and name
    line = refused(on_stack(stack, "status", shared))
    assert f"image id prefix {shared} is ambiguous" in line
    assert f"{ids[0]} (amos/twins/one.jpg)" in line and f"{ids[1]} (amos/twins/two.jpg)" in line
    # and one more character picks one of them
    done = on_stack(stack, "--json", "status", ids[1][:9])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["filename"] == "two.jpg"


def test_list_pages_an_owners_images_newest_first(stack: LocalStack, tmp_path: Path) -> None:
    files = [photo(tmp_path, f"{n}.jpg") for n in ("first", "second", "third")]
    first, second, third = upload(stack, *files, owner="lena", album="trip")
    [other] = upload(stack, photo(tmp_path, "home.jpg"), owner="lena", album="home")
    [gone] = upload(stack, photo(tmp_path, "gone.jpg"), owner="lena", album="trip")
    assert on_stack(stack, "delete", gone).returncode == 0

    # --json: a page, newest first, and the cursor of the next
    done = on_stack(stack, "--json", "list", "--owner", "lena", "--limit", "3")
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert [i["imageId"] for i in page["images"]] == [other, third, second]
    assert page["images"][0]["filename"] == "home.jpg"
    done = on_stack(
        stack, "--json", "list", "--owner", "lena", "--limit", "3", "--cursor", page["nextCursor"]
    )
    assert done.returncode == 0, done.stderr
    rest = json.loads(done.stdout)
    assert [i["imageId"] for i in rest["images"]] == [first]  # the deleted one left out
    assert rest["nextCursor"] is None

    # Human: one line an image, and the command for the next page, which works as printed
    done = on_stack(stack, "list", "--owner", "lena", "--album", "trip", "--limit", "2")
    assert done.returncode == 0, done.stderr
    *lines, more = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        [third, "trip/third.jpg"],
        [second, "trip/second.jpg"],
    ]
    assert more.startswith("next page: pixflare list --owner lena --album trip --limit 2 --cursor ")
    done = on_stack(stack, *shlex.split(more.removeprefix("next page: pixflare ")))
    assert done.returncode == 0, done.stderr
    [last] = done.stdout.splitlines()  # the last page: no "next page" line
    assert last.split()[:2] == [first, "trip/first.jpg"]

    # A cursor from another listing is an argument error
    line = refused(
        on_stack(stack, "list", "--owner", "lena", "--cursor", page["nextCursor"][:-2]), code=2
    )
    assert "--cursor" in line


def test_a_deleted_name_says_until_when_and_restore_or_purge_frees_it(
    stack: LocalStack, target: S3Target, tmp_path: Path
) -> None:
    # Given an image backed up to its owner's destination
    done = on_stack(
        stack, "backup", "set", "--owner", "pia", "--endpoint", target.endpoint,
        "--bucket", target.bucket, "--access-key-id", target.access_key_id, "--path-style",
        env={"PIXFLARE_BACKUP_SECRET_ACCESS_KEY": target.secret_access_key},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    file = photo(tmp_path, "p.jpg")
    [image_id] = upload(stack, file, owner="pia", album="a")
    wait_until(
        lambda: (
            json.loads(on_stack(stack, "--json", "status", image_id).stdout)["backup_status"]
            == "synced"
        ),
        "the backup",
    )
    assert target.client().list_objects_v2(Bucket=target.bucket)["KeyCount"] == 1

    # When it is deleted, its name stays taken: until when, and the two ways out
    done = on_stack(stack, "--json", "delete", image_id[:8])
    assert done.returncode == 0, done.stderr
    until = iso_seconds(purge_due_at(json.loads(done.stdout)["deleted_at"], RETENTION_DAYS))
    line = refused(on_stack(stack, "upload", str(file), "--owner", "pia", "--album", "a"))
    assert f"pia/a/p.jpg belongs to a deleted image ({image_id})" in line
    assert f"after {until}" in line
    assert f"`pixflare restore {image_id}`" in line
    assert f"`pixflare delete {image_id} --purge`" in line

    # Restore brings it back as it was; a second restore is refused
    done = on_stack(stack, "restore", image_id[:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{image_id} restored: pia/a/p.jpg is back")
    assert "backup synced" in done.stdout
    assert "is not deleted" in refused(on_stack(stack, "restore", image_id))

    # Purge wants --yes without a terminal, and removes nothing without it
    line = refused(on_stack(stack, "delete", image_id, "--purge"), code=2)
    assert "--yes" in line
    assert on_stack(stack, "status", image_id).returncode == 0

    # With it: the live image, its objects and its backup go, and the name is free
    done = on_stack(stack, "delete", image_id[:8], "--purge", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{image_id} purged (live image pia/a/p.jpg)")
    assert "its original, variants, backup, and record are removed" in done.stdout
    assert target.client().list_objects_v2(Bucket=target.bucket)["KeyCount"] == 0
    assert f"no image {image_id}" in refused(on_stack(stack, "status", image_id))
    assert "no image id starts with" in refused(on_stack(stack, "status", image_id[:8]))
    assert "purged" in refused(on_stack(stack, "restore", image_id))
    [again] = upload(stack, file, owner="pia", album="a")
    assert again != image_id

    # A soft-deleted image purges the same way, and says which it was
    assert on_stack(stack, "delete", again).returncode == 0
    done = on_stack(stack, "--json", "delete", again, "--purge", "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["was"] == "deleted"
    assert upload(stack, file, owner="pia", album="a")
