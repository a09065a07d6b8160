"""The local scheduler's reading of EventBridge schedule expressions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pixflare.local.cron import CronSchedule, RateSchedule, ScheduleError, parse_schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # the three daily jobs
        ("cron(0 1 * * ? *)", "2026-03-01T00:30", "2026-03-01T01:00"),
        ("cron(0 2 * * ? *)", "2026-03-01T02:00", "2026-03-02T02:00"),  # strictly after
        ("cron(0 3 * * ? *)", "2026-12-31T23:59", "2027-01-01T03:00"),
        # steps, ranges, lists, names
        ("cron(0/15 * * * ? *)", "2026-03-01T10:16", "2026-03-01T10:30"),
        ("cron(*/20 8-9 * * ? *)", "2026-03-01T09:45", "2026-03-02T08:00"),
        ("cron(10-50/20 * * * ? *)", "2026-03-01T10:31", "2026-03-01T10:50"),
        ("cron(0 12 1,15 * ? *)", "2026-03-02T00:00", "2026-03-15T12:00"),
        ("cron(0 9 ? * MON-FRI *)", "2026-03-06T10:00", "2026-03-09T09:00"),  # Fri -> Mon
        ("cron(0 9 ? * 1 *)", "2026-03-02T00:00", "2026-03-08T09:00"),  # 1 = Sunday
        ("cron(30 6 ? JAN,JUL SAT 2027)", "2026-03-01T00:00", "2027-01-02T06:30"),
        ("cron(0 0 29 FEB ? *)", "2026-03-01T00:00", "2028-02-29T00:00"),
    ],
)
def test_next_firing_time(expression: str, after: str, expected: str) -> None:
    assert parse_schedule(expression).next_after(at(after)) == at(expected)


def test_a_schedule_whose_years_are_over_never_fires_again() -> None:
    assert parse_schedule("cron(0 0 1 1 ? 2020)").next_after(at("2026-01-01T00:00")) is None


def test_rate_counts_from_when_the_rule_started() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    assert isinstance(schedule, RateSchedule)
    assert schedule.seconds == 300
    start = at("2026-03-01T10:00")
    assert schedule.next_after(at("2026-03-01T10:07"), start=start) == at("2026-03-01T10:10")
    assert parse_schedule("rate(1 hour)").next_after(start, start=start) == at("2026-03-01T11:00")
    assert isinstance(parse_schedule("rate(2 days)"), RateSchedule)


def test_fields_are_parsed_to_their_values() -> None:
    schedule = parse_schedule("cron(0,30 9-11 ? * TUE *)")
    assert isinstance(schedule, CronSchedule)
    assert schedule.minutes == {0, 30}
    assert schedule.hours == {9, 10, 11}
    assert schedule.days_of_month is None
    assert schedule.days_of_week == {3}


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("cron(0 1 * * *)", "6 fields"),
        ("cron(0 1 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 1 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 1 L * ? *)", "L, W or #"),
        ("cron(0 1 ? * 6#3 *)", "L, W or #"),
        ("cron(0 1 15W * ? *)", "L, W or #"),
        ("cron(61 1 * * ? *)", "outside 0-59"),
        ("cron(0 5-2 * * ? *)", "runs backwards"),
        ("cron(0/0 1 * * ? *)", "step"),
        ("cron(0 1 * SMARCH ? *)", "not a number or a name"),
        ("rate(0 minutes)", "at least 1"),
        ("rate(1 minutes)", "say 1 minute"),
        ("rate(5 minute)", "say 1 minute or N minutes"),
        ("rate(5 weeks)", "expected cron(...) or rate(...)"),
        ("at(2026-01-01T00:00:00)", "expected cron(...) or rate(...)"),
    ],
)
def test_expressions_it_cannot_read_are_refused_with_a_reason(expression: str, says: str) -> None:
    with pytest.raises(ScheduleError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(expression)
