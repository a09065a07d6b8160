"""The images table's create: a path is claimed once, and a retried create is harmless."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from lambdas.shared import aws as shared_aws
from lambdas.shared.images import ImageRecord, ImageRepository, NameTakenError
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
