"""The images table's create: a path is claimed once, and a retried create is harmless;
id prefixes are written and removed with their records; restore; the purge date."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from lambdas.shared import aws as shared_aws
from lambdas.shared.config import settings_from_env
from lambdas.shared.errors import ConditionFailedError
from lambdas.shared.images import (
    ImageRecord,
    ImageRepository,
    NameTakenError,
    id_prefix_pk,
    is_purge_due,
    iso_seconds,
    purge_due_at,
)
from pixflare.operations.images import MAX_LIST_READS, list_images
from tests.support.aws_resources import REGION, Resources


def record(image_id: str) -> ImageRecord:
    return ImageRecord(
        image_id=image_id, owner="alice", album="trip", filename="a.jpg", bucket="b",
        original_key="alice/trip/a.jpg/original", created_at="2026-01-01T00:00:00Z",
    )  # fmt: skip


def test_a_taken_name_is_refused_for_another_image(aws: Resources) -> None:
    images = ImageRepository(aws.tables["images"])
    images.create(record("a" * 32))
    with pytest.raises(NameTakenError, match=r"alice/trip/a\.jpg already exists"):
        images.create(record("b" * 32))
    assert images.get("b" * 32) is None


def test_create_retried_after_its_first_attempt_committed_succeeds(aws: Resources) -> None:
    # Given a first attempt that commits but whose answer is lost, so the SDK sends the
    # same transaction again (a store that ignores the idempotency token then refuses it)
    images = ImageRepository(aws.tables["images"])
    first_attempts: list[dict[str, Any]] = []
    side_channel = boto3.client("dynamodb", region_name=REGION)

    def commit_first_attempt(params: dict[str, Any], **_: Any) -> None:
        if not first_attempts:
            first_attempts.append(params)
            side_channel.transact_write_items(**params)

    shared_aws.dynamodb().meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", commit_first_attempt
    )

    # When the create runs, its own write meets the first attempt's claim
    images.create(record("c" * 32))

    # Then that is not mistaken for a taken name: one image, claiming its path
    assert first_attempts
    assert images.get("c" * 32) is not None
    assert images.claimed_paths([record("c" * 32).path]) == {"alice/trip/a.jpg": "c" * 32}


# -- id prefixes: written and removed with the record -------------------------------------
def named(image_id: str, filename: str) -> ImageRecord:
    return record(image_id).model_copy(
        update={"filename": filename, "original_key": f"alice/trip/{filename}/original"}
    )


def prefix_item(images: ImageRepository, image_id: str) -> dict[str, Any] | None:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=images.table, Key={"pk": {"S": id_prefix_pk(image_id)}}, ConsistentRead=True
    )
    return item.get("Item")


@pytest.fixture
def images(aws: Resources) -> ImageRepository:
    return ImageRepository(aws.tables["images"])


def test_ids_sharing_a_prefix_are_found_and_forgotten_with_their_records(
    images: ImageRepository,
) -> None:
    # Given three images, two of whose ids share their first 8 characters
    twins = ["abcdef01" + "0" * 24, "abcdef01" + "1" * 24]
    other = "abcdef02" + "0" * 24
    for n, image_id in enumerate([*twins, other]):
        images.create(named(image_id, f"{n}.jpg"))
    # Then a prefix finds exactly the ids starting with it
    assert images.ids_with_prefix("abcdef01") == twins
    assert images.ids_with_prefix("abcdef011") == [twins[1]]
    assert images.ids_with_prefix("abcdef03") == []
    with pytest.raises(ValueError, match="at least 8"):
        images.ids_with_prefix("abcdef0")
    # When one twin is deleted, the other stays findable; when both are, the item goes
    images.delete(named(twins[0], "0.jpg"))
    assert images.ids_with_prefix("abcdef01") == [twins[1]]
    images.delete_many([named(twins[1], "1.jpg"), named(other, "2.jpg")])
    assert images.ids_with_prefix("abcdef01") == []
    assert prefix_item(images, twins[0]) is None and prefix_item(images, other) is None


def test_deleting_a_record_made_before_prefix_items_leaves_no_item(
    images: ImageRepository,
) -> None:
    # Given a record written the old way (no prefix item)
    old = named("1234abcd" + "9" * 24, "old.jpg")
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=images.table,
        Item={"pk": {"S": f"image#{old.image_id}"}, "image_id": {"S": old.image_id}},
    )
    assert images.ids_with_prefix("1234abcd") == []
    # When it is deleted, no empty prefix item is left behind
    images.delete(old)
    assert prefix_item(images, old.image_id) is None


def test_many_records_are_deleted_in_transactions_within_the_action_limit(
    images: ImageRepository,
) -> None:
    # 70 records need three transactions (3 actions each, 100 at most a transaction)
    records = [named(f"{n:08x}" + "0" * 24, f"{n}.jpg") for n in range(70)]
    for one in records:
        images.create(one)
    assert images.delete_many(records) == 70
    assert images.get_many(r.image_id for r in records) == []
    assert all(prefix_item(images, r.image_id) is None for r in records[::10])


def test_an_expired_reservation_takes_its_prefix_entry_along(images: ImageRepository) -> None:
    reservation = named("feedbeef" + "0" * 24, "r.jpg").model_copy(
        update={"upload_expires_at": "2026-01-01T00:15:00Z"}
    )
    images.create(reservation)
    assert images.delete_expired_reservation(reservation, "2026-01-02T00:00:00Z")
    assert images.ids_with_prefix("feedbeef") == []


def test_restore_undoes_a_soft_delete_and_only_that(images: ImageRepository) -> None:
    image_id = "cafe" * 8
    images.create(named(image_id, "c.jpg"))
    with pytest.raises(ConditionFailedError):
        images.restore(image_id)  # not deleted
    images.soft_delete(image_id, "2026-02-01T00:00:00Z")
    assert images.deleted_before("2026-03-01T00:00:00Z", limit=10)[0]
    restored = images.restore(image_id)
    assert restored is not None and restored.deleted_at is None
    assert images.deleted_before("2026-03-01T00:00:00Z", limit=10)[0] == []
    with pytest.raises(ConditionFailedError):
        images.restore("d" * 32)  # no such image


def test_the_purge_date_is_the_deletion_plus_the_retention() -> None:
    deleted = record("a" * 32).model_copy(update={"deleted_at": "2026-03-01T10:00:00.000000Z"})
    due = purge_due_at("2026-03-01T10:00:00.000000Z", 30)
    assert iso_seconds(due) == "2026-03-31T10:00:00Z"
    assert not is_purge_due(deleted, due, 30)
    assert is_purge_due(deleted, due + timedelta(microseconds=1), 30)
    assert not is_purge_due(record("a" * 32), due + timedelta(days=999), 30)


def test_a_run_of_deleted_images_ends_a_list_page_early_with_a_cursor(aws: Resources) -> None:
    # Given one live image, older than more deleted ones than a page reads through
    images = ImageRepository(aws.tables["images"])
    live = "f" * 32
    images.create(record(live))
    deleted = MAX_LIST_READS * 2 + 1  # each read asks for limit + 1 = 2
    for n in range(deleted):
        image_id = f"{n:032x}"
        images.create(
            ImageRecord(
                image_id=image_id, owner="alice", album="trip", filename=f"{n}.jpg",
                bucket="b", original_key=f"alice/trip/{n}.jpg/original",
                created_at=f"2026-02-01T00:00:{n:02d}Z",
            )
        )  # fmt: skip
        images.soft_delete(image_id, "2026-03-01T00:00:00Z")
    settings = settings_from_env(aws.env())
    # When the owner's images are listed a page of one at a time
    page = list_images(settings, "alice", limit=1)
    pages = 1
    found = list(page.records)
    while page.next_cursor and pages < deleted:  # bounded: a page reads at least one item
        page = list_images(settings, "alice", limit=1, cursor=page.next_cursor)
        found.extend(page.records)
        pages += 1
    # Then the first page stopped early (empty, with a cursor), and paging on finds the
    # live image, once
    assert [r.image_id for r in found] == [live]
    assert pages > 1
