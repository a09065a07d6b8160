"""`pixflare cron run`, `pixflare views record` and `pixflare stats` against moto resources."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import boto3
import pytest

from lambdas.shared.config import load_settings
from lambdas.shared.images import ImageRepository
from lambdas.shared.originals import store_upload
from pixflare.commands import cron, views
from pixflare.context import CommandContext, CommandError
from tests.support.aws_resources import REGION, Resources
from tests.support.env import use_env


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("cron"))
    return aws


def pixflare(*argv: str, json_output: bool = True) -> tuple[int, Any]:
    """Parse and run one subcommand the way the CLI does; returns (status, output)."""
    parser = argparse.ArgumentParser(prog="pixflare")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cron.register(subparsers)
    views.register(subparsers)
    args = parser.parse_args(argv)
    out = io.StringIO()
    ctx = CommandContext(load_settings(), json_output=json_output, stdout=out)
    status = args.func(args, ctx)
    return status, json.loads(out.getvalue()) if json_output else out.getvalue()


def test_delete_then_cleanup_a_month_later_removes_everything(env: Resources) -> None:
    # Given an uploaded image, soft-deleted on 1 March
    record = store_upload(
        load_settings(), b"\xff\xd8\xff" + b"0" * 64, owner="alice", album="a", filename="p.jpg"
    ).record
    ImageRepository(env.tables["images"]).soft_delete(record.image_id, "2026-03-01T00:00:00Z")

    # When an operator runs cleanup as of a month and more later
    status, out = pixflare("cron", "run", "cleanup", "--now", "2026-04-05T01:00:00Z")

    # Then the job reports what it did, and nothing of the image is left
    assert status == 0
    assert out["done"] is True
    assert out["counts"]["records_deleted"] == 1
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=env.bucket)
    assert listing.get("KeyCount", 0) == 0
    assert ImageRepository(env.tables["images"]).get(record.image_id) is None


def test_views_recorded_then_rolled_up_then_reported(env: Resources) -> None:
    record = store_upload(
        load_settings(), b"\x89PNG\r\n\x1a\n" + b"0" * 64, owner="alice", album="a", filename="i"
    ).record
    status, recorded = pixflare(
        "views", "record", record.image_id, "--count", "3", "--at", "2026-03-04T10:00:00Z"
    )
    assert status == 0
    assert recorded["dayViews"] == 3
    pixflare("views", "record", record.image_id, "--at", "2026-03-04T11:00:00Z")

    pixflare("cron", "run", "analytics", "--now", "2026-03-05T02:00:00Z")

    _, day = pixflare("stats", "alice", "--day", "2026-03-04")
    _, month = pixflare("stats", "alice", "--month", "2026-03")
    assert day["views"] == 4
    assert month["views"] == 4
    assert month["days"] == {"2026-03-04": 4}
    _, text = pixflare("stats", "alice", "--day", "2026-03-04", json_output=False)
    assert "4 views" in text


@pytest.mark.parametrize(
    "argv",
    [
        ("views", "record", "f" * 32),  # unknown image
        ("views", "record", "../x"),  # not an image id
        ("stats", "alice", "--day", "yesterday"),
        ("cron", "run", "cleanup", "--now", "not-a-time"),
    ],
)
def test_bad_input_is_a_one_line_error(env: Resources, argv: tuple[str, ...]) -> None:
    with pytest.raises(CommandError) as caught:
        pixflare(*argv)
    assert "\n" not in str(caught.value)
    assert str(caught.value)
