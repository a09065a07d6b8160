"""EventBridge schedule expressions: ``cron(min hour day-of-month month day-of-week year)``
and ``rate(N unit)``, evaluated in UTC as EventBridge does.

Supported in cron fields: ``*``, ``?`` (day-of-month or day-of-week, exactly one of
them), single values, lists (``1,15``), ranges (``MON-FRI``), steps (``0/15``,
``*/5``, ``10-50/20``) and month / weekday names. ``L``, ``W`` and ``#`` are AWS
features this evaluator does not implement: they are refused with a clear error
rather than misread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
# AWS numbers weekdays 1 (Sunday) to 7 (Saturday).
WEEKDAYS = {
    name: number
    for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)
}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 1, 7, WEEKDAYS),
    ("year", 1970, 2199, {}),
)
_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# How far ahead next_after() looks before concluding an expression never fires again.
SEARCH_YEARS = 8


class ScheduleError(ValueError):
    """An expression this evaluator cannot read (the message says which part and why)."""


def _parse_value(text: str, names: dict[str, int], field: str, expression: str) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not upper.isdigit():
        if any(mark in upper for mark in ("L", "W", "#")):
            raise ScheduleError(
                f"{expression}: {field} {text!r} uses L, W or #, which the local scheduler "
                "does not support"
            )
        raise ScheduleError(f"{expression}: {field} {text!r} is not a number or a name")
    return int(upper)


def _parse_field(
    text: str, low: int, high: int, names: dict[str, int], field: str, expression: str
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{expression}: {field} has an empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{expression}: {field} step {step_text!r} must be >= 1")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _parse_value(first, names, field, expression)
            end = _parse_value(last, names, field, expression)
        else:
            start = _parse_value(base, names, field, expression)
            # "5/15" means from 5 to the end of the range, every 15.
            end = high if slash else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleError(f"{expression}: {field} {part!r} is outside {low}-{high}")
        if start > end:
            raise ScheduleError(f"{expression}: {field} range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None  # None: "?" (day-of-week decides)
    months: frozenset[int]
    days_of_week: frozenset[int] | None  # AWS numbering, 1 = Sunday; None: "?"
    years: frozenset[int]

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months or day.year not in self.years:
            return False
        if self.days_of_month is not None and day.day not in self.days_of_month:
            return False
        aws_weekday = (day.isoweekday() % 7) + 1  # Monday 1 -> 2, Sunday 7 -> 1
        return self.days_of_week is None or aws_weekday in self.days_of_week

    def next_after(self, moment: datetime) -> datetime | None:
        """The first firing strictly after ``moment`` (UTC), or None if it never fires again."""
        moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
        day = moment.replace(hour=0, minute=0)
        minute_of_day = moment.hour * 60 + moment.minute + 1  # strictly after
        for _ in range(366 * SEARCH_YEARS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        if hour * 60 + minute >= minute_of_day:
                            return day.replace(hour=hour, minute=minute)
            day += timedelta(days=1)
            minute_of_day = 0
            if day.year > max(self.years):
                return None
        return None


@dataclass(frozen=True)
class RateSchedule:
    expression: str
    seconds: int

    def next_after(self, moment: datetime, *, start: datetime | None = None) -> datetime:
        """Every ``seconds`` from ``start`` (when the rule was created), strictly after moment."""
        origin = (start or moment).astimezone(UTC)
        moment = moment.astimezone(UTC)
        elapsed = (moment - origin).total_seconds()
        periods = max(0, int(elapsed // self.seconds)) + 1
        return origin + timedelta(seconds=periods * self.seconds)


Schedule = CronSchedule | RateSchedule


def parse_schedule(expression: str) -> Schedule:
    """Parse an EventBridge ScheduleExpression; ScheduleError when it cannot be read."""
    text = expression.strip()
    rate = _RATE.fullmatch(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ScheduleError(f"{expression}: the rate must be at least 1")
        singular = unit.rstrip("s")
        if (value == 1) != (unit == singular):
            raise ScheduleError(f"{expression}: say 1 {singular} or N {singular}s")
        return RateSchedule(text, value * _UNIT_SECONDS[singular])
    if not (text.startswith("cron(") and text.endswith(")")):
        raise ScheduleError(f"{expression!r}: expected cron(...) or rate(...)")
    parts = text[len("cron(") : -1].split()
    if len(parts) != 6:
        raise ScheduleError(
            f"{expression}: cron needs 6 fields (minutes hours day-of-month month "
            f"day-of-week year), got {len(parts)}"
        )
    day_of_month, day_of_week = parts[2], parts[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleError(
            f"{expression}: exactly one of day-of-month and day-of-week must be '?'"
        )
    parsed = [
        _parse_field(part, low, high, names, field, expression)
        for part, (field, low, high, names) in zip(parts, _FIELDS, strict=True)
    ]
    return CronSchedule(
        expression=text,
        minutes=parsed[0],
        hours=parsed[1],
        days_of_month=None if day_of_month == "?" else parsed[2],
        months=parsed[3],
        days_of_week=None if day_of_week == "?" else parsed[4],
        years=parsed[5],
    )
