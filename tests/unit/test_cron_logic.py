"""The daily jobs' pure parts: the runner's budget, and each job's decisions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from lambdas.cron.analytics import image_days, month_day_range, parse_month, rollup_day
from lambdas.cron.backup_sync import StateEntry, oldest_first, verdict
from lambdas.cron.cleanup import (
    image_object_keys,
    parse_listing,
    plan_orphans,
    retention_cutoff,
)
from lambdas.cron.runner import Budget, InvalidTimeError, StepResult, parse_now, run_job
from lambdas.cron.view_counters import VIEW_SHARDS, expires_at, hour_attribute, view_shard
from lambdas.shared.errors import PermanentError
from lambdas.shared.images import ImageRecord
from lambdas.shared.messages import CronContinuation
from lambdas.shared.objects import ListedObject

NOW = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)


class CountingJob:
    """A job of ``total`` steps; each step advances the cursor by one."""

    name = "analytics"

    def __init__(self, total: int, clock: list[int] | None = None) -> None:
        self.total = total
        self.seen: list[int] = []
        self.clock = clock

    def step(self, cursor: Mapping[str, Any]) -> StepResult:
        position = int(cursor.get("at", 0))
        self.seen.append(position)
        if self.clock is not None:
            self.clock[0] -= 50_000  # each step takes 50 s of the invocation
        if position + 1 >= self.total:
            return StepResult(None, {"items": 1})
        return StepResult({"at": position + 1}, {"items": 1})


class Clock:
    """A Lambda context whose remaining time the test moves."""

    aws_request_id = "request"
    function_name = "cron"

    def __init__(self, remaining: list[int]) -> None:
        self.remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining[0]


def test_runner_without_deadline_loops_until_done() -> None:
    job = CountingJob(7)
    report = run_job(job, now=NOW, budget=Budget(None))  # type: ignore[arg-type]
    assert report.done and report.steps == 7
    assert job.seen == list(range(7))
    assert report.counts["items"] == 7


def test_runner_stops_before_the_margin_and_hands_on_the_cursor() -> None:
    # Given an invocation with 180 s left, 50 s per step and a 21 s margin
    remaining = [180_000]
    job = CountingJob(10, clock=remaining)
    sent: list[CronContinuation] = []

    report = run_job(
        job,  # type: ignore[arg-type]
        now=NOW,
        cursor={"at": 2},
        first_step=3,
        budget=Budget(Clock(remaining)),
        continue_with=lambda m: sent.append(m) or "msg-1",
    )

    # Then it ran 3 steps (180 -> 130 -> 80 -> 30 s left): a fourth would not fit in 30 s
    assert report.steps == 3
    assert not report.done
    assert report.continuation_message_id == "msg-1"
    [message] = sent
    assert message.cursor == {"at": 5}
    assert message.step == 6
    assert message.now == "2026-03-05T02:00:00.000000Z"
    assert message.job == "analytics"


def test_first_step_always_runs_so_a_chain_always_progresses() -> None:
    sent: list[CronContinuation] = []
    report = run_job(
        CountingJob(3),  # type: ignore[arg-type]
        now=NOW,
        budget=Budget(Clock([1_000])),
        continue_with=lambda m: sent.append(m) or "id",
    )
    assert report.steps == 1
    assert sent[0].cursor == {"at": 1}


def test_step_limit_bounds_a_run() -> None:
    report = run_job(CountingJob(1000), now=NOW, budget=Budget(None, max_steps=5))  # type: ignore[arg-type]
    assert report.steps == 5 and not report.done


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-05T02:00:00Z", NOW),
        ("2026-03-05T03:00:00+01:00", NOW),
        ("2026-03-05T02:00:00", NOW),
        ("2026-03-05", datetime(2026, 3, 5, tzinfo=UTC)),
    ],
)
def test_parse_now(text: str, expected: datetime) -> None:
    assert parse_now(text) == expected


def test_parse_now_refuses_garbage() -> None:
    with pytest.raises(InvalidTimeError, match="ISO 8601"):
        parse_now("next tuesday")


def record(**overrides: Any) -> ImageRecord:
    data: dict[str, Any] = {
        "image_id": "a" * 32,
        "owner": "alice",
        "album": "trips",
        "filename": "x.jpg",
        "bucket": "b",
        "original_key": "alice/trips/x.jpg/original",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "sha256": "f" * 64,
        "bytes": 1234,
    }
    data.update(overrides)
    return ImageRecord.model_validate(data)


def test_retention_cutoff() -> None:
    assert retention_cutoff(NOW, 30) == "2026-02-03T02:00:00.000000Z"


def test_image_keys_cover_the_layout_and_never_leave_the_prefix() -> None:
    variants = {
        "w128": {"key": "alice/trips/x.jpg/w128", "width": 1, "height": 1, "bytes": 1,
                 "content_type": "image/jpeg"},
        "evil": {"key": "bob/other/y.jpg/original", "width": 1, "height": 1, "bytes": 1,
                 "content_type": "image/jpeg"},
    }  # fmt: skip
    keys = image_object_keys(record(variants=variants))
    assert len(keys) == 9
    assert all(k.startswith("alice/trips/x.jpg/") for k in keys)


def test_orphan_plan_respects_claims_grace_and_unparseable_keys() -> None:
    old = NOW - timedelta(days=3)
    young = NOW - timedelta(hours=2)
    listed = [
        ListedObject("alice/trips/x.jpg/original", old),  # claimed
        ListedObject("alice/trips/gone.jpg/w128", old),  # orphan, old
        ListedObject("alice/trips/new.jpg/original", young),  # orphan, young
        ListedObject("alice/trips/x.jpg/notes.txt", old),  # not an image key
        ListedObject("../etc/passwd/original", old),  # not a valid path
    ]
    parsed, unrecognised = parse_listing(listed)
    plan = plan_orphans(parsed, {"alice/trips/x.jpg"}, now=NOW)
    assert plan.delete == ["alice/trips/gone.jpg/w128"]
    assert (plan.kept_young, plan.claimed, unrecognised) == (1, 1, 2)


def test_rollup_day_is_the_previous_utc_day() -> None:
    assert rollup_day(NOW) == date(2026, 3, 4)
    late_evening_elsewhere = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    assert rollup_day(late_evening_elsewhere) == date(2026, 2, 28)
    assert month_day_range("2026-02") == ("day#2026-02-01", "day#2026-02-31")


def test_parse_month_refuses_bad_input() -> None:
    assert parse_month("2026-3") == "2026-03"
    with pytest.raises(PermanentError):
        parse_month("March")


def test_image_days_sum_hours() -> None:
    [total] = image_days([{"sk": "a" * 32, "owner": "alice", "views": 5, "h01": 2, "h23": 3}])
    assert (total.views, total.owner, total.hours) == (5, "alice", {"h01": 2, "h23": 3})


def test_view_shards_are_stable_and_spread() -> None:
    ids = [f"{n:032x}" for n in range(2000)]
    shards = [view_shard(i) for i in ids]
    assert view_shard("0" * 32) == view_shard("0" * 32)
    assert set(shards) == set(range(VIEW_SHARDS))
    assert max(shards.count(s) for s in range(VIEW_SHARDS)) < 2 * 2000 / VIEW_SHARDS
    assert hour_attribute(datetime(2026, 3, 4, 23, 59, tzinfo=UTC)) == "h23"
    assert expires_at(date(2026, 3, 4)) == int(datetime(2026, 4, 14, tzinfo=UTC).timestamp())


def test_verdict_compares_presence_size_and_checksum() -> None:
    image = record(backup={"stored_bytes": 1234})
    good = {
        "Metadata": {"pixflare-sha256": "f" * 64, "pixflare-size": "1234"},
        "ContentLength": 1234,
    }
    assert verdict(image, good) == ("ok", "")
    assert verdict(image, None)[0] == "missing"
    wrong_sha = {**good, "Metadata": {"pixflare-sha256": "0" * 64, "pixflare-size": "1234"}}
    assert verdict(image, wrong_sha)[0] == "mismatch"
    wrong_size = {**good, "Metadata": {"pixflare-sha256": "f" * 64, "pixflare-size": "1"}}
    assert verdict(image, wrong_size)[0] == "mismatch"
    truncated = {**good, "ContentLength": 10}
    assert verdict(image, truncated)[0] == "mismatch"


def test_oldest_first_merges_states_and_keeps_the_limit() -> None:
    a, b, c = (record(image_id=ch * 32) for ch in "abc")
    pending = [StateEntry("2026-01-02", a), StateEntry("2026-01-04", b)]
    failed = [StateEntry("2026-01-03", c)]
    assert [e.record.image_id[0] for e in oldest_first(pending, failed, 2)] == ["a", "c"]
