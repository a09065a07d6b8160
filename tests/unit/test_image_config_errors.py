"""The variant and backup workers' config-error hooks: the image record shows what
stopped its job, where `pixflare status ID` already shows that job's errors."""

from __future__ import annotations

import uuid

import pytest

from lambdas.backup import handler as backup_handler
from lambdas.shared.config import load_settings
from lambdas.shared.errors import ConfigError
from lambdas.shared.images import ImageRecord, ImageRepository
from lambdas.shared.messages import BackupJob, VariantJob
from lambdas.shared.worker import JobContext
from lambdas.variant import handler as variant_handler
from tests.support.aws_resources import Resources
from tests.support.env import use_env

OWNER = "alice"
MISSING = ConfigError("BACKUP_KMS_KEY_ID is not set")


@pytest.fixture
def images(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> ImageRepository:
    use_env(monkeypatch, aws.env("variant"))
    return ImageRepository(aws.tables["images"])


def context() -> JobContext:
    return JobContext(load_settings(), "message-1", 1)


def seed(images: ImageRepository, **fields: object) -> ImageRecord:
    record = ImageRecord(
        image_id=uuid.uuid4().hex,
        owner=OWNER,
        album="trip",
        filename="a.jpg",
        bucket="images",
        original_key="alice/trip/a.jpg/original",
        created_at="2026-05-01T10:00:00Z",
        **fields,  # type: ignore[arg-type]
    )
    images.create(record)
    return record


def test_variants_stopped_by_a_setting_show_it_and_stay_pending(images: ImageRepository) -> None:
    record = seed(images)
    job = VariantJob(imageId=record.image_id, owner=OWNER)
    variant_handler.record_config_error(job, MISSING, context())
    stored = images.get(record.image_id)
    assert stored is not None
    assert stored.variants_status == "pending"
    assert stored.error == (
        "configuration: BACKUP_KMS_KEY_ID is not set; "
        "fix the setting, then `pixflare dlq redrive variant`"
    )


@pytest.mark.parametrize(
    ("owner", "fields"),
    [("mallory", {}), (OWNER, {"variants_status": "ready"})],
    ids=["another owner's image", "variants already ready"],
)
def test_variants_hook_leaves_other_records_alone(
    images: ImageRepository, owner: str, fields: dict[str, object]
) -> None:
    record = seed(images, **fields)
    job = VariantJob(imageId=record.image_id, owner=owner)
    variant_handler.record_config_error(job, MISSING, context())
    stored = images.get(record.image_id)
    assert stored is not None and stored.error is None


def test_a_backup_stopped_by_a_setting_shows_it_as_its_last_error(
    images: ImageRepository,
) -> None:
    record = seed(images, backup_status="pending", backup={"requested_at": "2026-05-01"})
    job = BackupJob(imageId=record.image_id, owner=OWNER, action="upload", requestedAt="2026-05-01")
    backup_handler.record_config_error(job, MISSING, context())
    stored = images.get(record.image_id)
    assert stored is not None
    assert stored.backup_status == "pending"
    assert stored.backup["requested_at"] == "2026-05-01"
    assert stored.backup["last_error"] == (
        "configuration: BACKUP_KMS_KEY_ID is not set; "
        "fix the setting, then `pixflare dlq redrive backup`"
    )
    assert stored.backup["last_error_at"]
    # and another owner's job never touches it
    other = BackupJob(
        imageId=record.image_id, owner="mallory", action="upload", requestedAt="2026-05-02"
    )
    backup_handler.record_config_error(other, ConfigError("Y is not set"), context())
    again = images.get(record.image_id)
    assert again is not None and again.backup["last_error"] == stored.backup["last_error"]
