"""View counters and the nightly roll-up under moto: daily, monthly, and idempotent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest

from lambdas.cron.analytics import (
    day_rolled_up,
    owner_day_stats,
    owner_month_stats,
    rolled_up_days,
)
from lambdas.cron.registry import run_to_completion
from lambdas.cron.view_counters import VIEW_SHARDS, record_views, view_shard
from lambdas.shared.config import load_settings
from tests.support.aws_resources import REGION, Resources
from tests.support.env import use_env

IMG_A, IMG_B, IMG_C = (c * 32 for c in "abc")


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("cron"))
    return aws


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def stats_item(env: Resources, pk: str, sk: str) -> dict[str, Any] | None:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=env.tables["stats"], Key={"pk": {"S": pk}, "sk": {"S": sk}}
    )
    return item.get("Item")


def views(env: Resources, pk: str, sk: str) -> int:
    item = stats_item(env, pk, sk)
    return int(item["views"]["N"]) if item else 0


def seed_views(env: Resources) -> None:
    settings = load_settings()
    # 2026-03-04: alice's A and B, bob's C; one view of A on the 5th (not that day)
    record_views(settings, image_id=IMG_A, owner="alice", at=at("2026-03-04T09:15:00"), count=3)
    record_views(settings, image_id=IMG_A, owner="alice", at=at("2026-03-04T23:59:59"))
    record_views(settings, image_id=IMG_B, owner="alice", at=at("2026-03-04T00:00:00"), count=5)
    record_views(settings, image_id=IMG_C, owner="bob", at=at("2026-03-04T12:00:00"), count=7)
    record_views(settings, image_id=IMG_A, owner="alice", at=at("2026-03-05T00:00:01"), count=100)


def test_counters_are_per_image_per_day_with_hours(env: Resources) -> None:
    settings = load_settings()
    first = record_views(settings, image_id=IMG_A, owner="alice", at=at("2026-03-04T09:15:00"))
    second = record_views(
        settings, image_id=IMG_A, owner="alice", at=at("2026-03-04T09:45:00"), count=4
    )
    assert (first.day_views, second.day_views, second.hour_views) == (1, 5, 5)
    item = stats_item(env, f"views#2026-03-04#{view_shard(IMG_A)}", IMG_A)
    assert item is not None
    assert item["h09"]["N"] == "5"
    assert item["owner"]["S"] == "alice"
    assert int(item["expires_at"]["N"]) > int(at("2026-04-05T00:00:00").timestamp())


def test_rollup_of_the_previous_day(env: Resources) -> None:
    seed_views(env)

    # When the 02:00 job runs on the 5th
    report = run_to_completion("analytics", load_settings(), at("2026-03-05T02:00:00"))

    # Then the 4th is rolled up, per image and per owner, and the 5th's view is not in it
    assert report.done
    assert views(env, f"image#{IMG_A}", "day#2026-03-04") == 4
    assert views(env, f"image#{IMG_B}", "day#2026-03-04") == 5
    assert views(env, "owner#alice", "day#2026-03-04") == 9
    assert views(env, "owner#bob", "day#2026-03-04") == 7
    assert views(env, "owner#alice", "month#2026-03") == 9
    hours = stats_item(env, f"image#{IMG_A}", "day#2026-03-04")["hours"]["M"]  # type: ignore[index]
    assert {k: v["N"] for k, v in hours.items()} == {"h09": "3", "h23": "1"}


def test_running_twice_for_one_day_gives_the_same_numbers(env: Resources) -> None:
    seed_views(env)
    settings = load_settings()
    run_to_completion("analytics", settings, at("2026-03-05T02:00:00"))
    run_to_completion("analytics", settings, at("2026-03-05T02:30:00"))

    assert views(env, f"image#{IMG_A}", "day#2026-03-04") == 4
    assert views(env, "owner#alice", "day#2026-03-04") == 9
    assert views(env, "owner#alice", "month#2026-03") == 9


def test_a_finished_rollup_marks_its_day_and_a_rerun_overwrites_the_mark(env: Resources) -> None:
    seed_views(env)
    settings = load_settings()
    assert day_rolled_up(settings, date(2026, 3, 4)) is None

    run_to_completion("analytics", settings, at("2026-03-05T02:00:00"))
    first = stats_item(env, "rollups", "day#2026-03-04")
    assert first is not None
    assert {k: next(iter(v.values())) for k, v in first.items()} == {
        "pk": "rollups",
        "sk": "day#2026-03-04",
        "day": "2026-03-04",
        "rolled_up_at": "2026-03-05T02:00:00.000000Z",
        "images": "3",
        "views": "16",
        "owners": "2",
    }
    assert "expires_at" not in first  # kept as long as the day totals it vouches for

    # A re-run writes the same counts again, with its own time
    run_to_completion("analytics", settings, at("2026-03-05T02:30:00"))
    marker = day_rolled_up(settings, date(2026, 3, 4))
    assert marker is not None
    assert marker["rolled_up_at"] == "2026-03-05T02:30:00.000000Z"
    assert (marker["images"], marker["views"], marker["owners"]) == (3, 16, 2)
    assert rolled_up_days(settings, "2026-03") == ["2026-03-04"]

    # A day without any views is marked too: rolled up, nothing to count
    run_to_completion("analytics", settings, at("2026-03-02T02:00:00"))
    empty = day_rolled_up(settings, date(2026, 3, 1))
    assert empty is not None
    assert (empty["images"], empty["views"], empty["owners"]) == (0, 0, 0)
    assert rolled_up_days(settings, "2026-03") == ["2026-03-01", "2026-03-04"]
    assert rolled_up_days(settings, "2026-02") == []


def test_month_total_sums_the_days_of_the_month(env: Resources) -> None:
    settings = load_settings()
    # Given views on the last day of February and on three days of March
    record_views(settings, image_id=IMG_A, owner="alice", at=at("2026-02-28T10:00:00"), count=50)
    for day, count in (("01", 2), ("02", 3), ("03", 4)):
        record_views(
            settings, image_id=IMG_A, owner="alice", at=at(f"2026-03-{day}T10:00:00"), count=count
        )
        record_views(settings, image_id=IMG_B, owner="alice", at=at(f"2026-03-{day}T11:00:00"))

    # When the nightly job has run for each of those days
    for now in ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"):
        run_to_completion("analytics", settings, at(f"{now}T02:00:00"))

    # Then the month-to-date is March's days only, and February keeps its own total
    assert views(env, "owner#alice", "month#2026-03") == (2 + 1) + (3 + 1) + (4 + 1)
    assert views(env, "owner#alice", "month#2026-02") == 50
    month = owner_month_stats(settings, "alice", "2026-03")
    assert month["views"] == 12
    assert month["through"] == "2026-03-03"
    assert month["days"] == {"2026-03-01": 3, "2026-03-02": 4, "2026-03-03": 5}
    assert owner_day_stats(settings, "alice", date(2026, 3, 2))["views"] == 4


def test_many_images_across_pages_and_shards(env: Resources) -> None:
    settings = load_settings()
    image_ids = [f"{n:032x}" for n in range(1, 61)]
    for n, image_id in enumerate(image_ids, start=1):
        record_views(
            settings,
            image_id=image_id,
            owner=f"owner{n % 3}",
            at=at("2026-03-04T08:00:00"),
            count=n,
        )
    assert len({view_shard(i) for i in image_ids}) == VIEW_SHARDS

    from lambdas.cron.analytics import AnalyticsJob
    from lambdas.cron.runner import Budget, run_job

    job = AnalyticsJob(settings, at("2026-03-05T02:00:00"), images_page_size=2, owners_page_size=1)
    report = run_job(job, now=at("2026-03-05T02:00:00"), budget=Budget(None))

    assert report.done
    assert report.counts["images_rolled_up"] == 60
    assert report.counts["owners_rolled_up"] == 3
    # The marker's counts, carried from step to step in the cursor, are the day's
    marker = day_rolled_up(settings, date(2026, 3, 4))
    assert marker is not None
    assert (marker["images"], marker["views"], marker["owners"]) == (60, sum(range(61)), 3)
    for owner in range(3):
        expected = sum(n for n in range(1, 61) if n % 3 == owner)
        assert views(env, f"owner#owner{owner}", "day#2026-03-04") == expected


def test_stats_for_a_day_not_rolled_up_yet(env: Resources) -> None:
    stats = owner_day_stats(load_settings(), "alice", date(2026, 3, 4))
    assert stats == {
        "owner": "alice",
        "day": "2026-03-04",
        "views": 0,
        "images": 0,
        "rolledUp": False,
    }
