"""`pixflare views record IMAGE_ID [--count N] [--at ISO8601]` and
`pixflare stats OWNER [--day YYYY-MM-DD | --month YYYY-MM]`.

Recording adds to the image's counter for that day and hour (the analytics job
rolls the counters up the next night); stats reads the roll-ups.

The roll-up writes nothing for an owner without views, but it marks each day it has
finished (``rollups`` / ``day#{date}``, lambdas/cron/analytics.py), so stats can tell
"rolled up, none of the owner's images were viewed" from "not rolled up yet". Its
``rollup`` field: for a day ``rolled-up`` or ``not-rolled-up``; for a month
``rolled-up`` (``through`` the latest rolled-up day) or ``nothing-rolled-up``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import Any, Literal

from lambdas.cron.analytics import (
    day_rolled_up,
    month_of,
    owner_day_stats,
    owner_month_stats,
    parse_day,
    parse_month,
    rolled_up_days,
)
from lambdas.cron.runner import parse_now
from lambdas.cron.view_counters import MAX_COUNT, record_views
from lambdas.shared.config import Settings
from lambdas.shared.errors import PixflareError
from lambdas.shared.images import ImageRepository
from lambdas.shared.keys import validate_segment
from pixflare.context import CommandContext, CommandError


def register(subparsers: Any) -> None:
    views = subparsers.add_parser("views", help="count views of an image")
    commands = views.add_subparsers(dest="views_command", metavar="COMMAND", required=True)
    record = commands.add_parser(
        "record", help="count views of an image (as a request to the image would)"
    )
    record.add_argument("image_id", metavar="IMAGE_ID")
    record.add_argument("--count", type=int, default=1, help=f"how many views (1-{MAX_COUNT})")
    record.add_argument("--at", metavar="ISO8601", help="when they happened (default: now)")
    record.set_defaults(func=run_record)

    stats = subparsers.add_parser(
        "stats", help="an owner's rolled-up views for a day or a month (default: this month)"
    )
    stats.add_argument("owner", metavar="OWNER")
    period = stats.add_mutually_exclusive_group()
    period.add_argument("--day", metavar="YYYY-MM-DD")
    period.add_argument("--month", metavar="YYYY-MM")
    stats.set_defaults(func=run_stats)


def run_record(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        image_id: str = args.image_id  # resolved by pixflare.cli.main
        at = parse_now(args.at)
        record = ImageRepository(ctx.settings.require("images_table")).get(image_id)
        if record is None:
            raise CommandError(f"unknown image {image_id}")
        recorded = record_views(
            ctx.settings, image_id=image_id, owner=record.owner, at=at, count=args.count
        )
    except PixflareError as err:
        raise CommandError(str(err)) from None
    ctx.emit(
        recorded.to_dict(),
        f"{recorded.count} view(s) of {image_id} on {recorded.day} "
        f"({recorded.day_views} that day so far)",
    )
    return 0


RollUp = Literal["rolled-up", "not-rolled-up", "nothing-rolled-up"]
JOB_TIME = "the analytics job rolls each day up at 02:00 UTC the next day"


def day_note(state: RollUp, owner: str, day: str) -> str:
    """What the human line adds when the owner has no figures for the day."""
    if state == "rolled-up":
        return f" (rolled up: none of {owner}'s images were viewed that day)"
    return f" (not rolled up yet: {JOB_TIME}, or run `pixflare cron run analytics --day {day}`)"


def day_stats(settings: Settings, owner: str, day: date) -> dict[str, Any]:
    data = owner_day_stats(settings, owner, day)
    # The owner's total is written only once their day is summed, so it counts as rolled
    # up too (days rolled up before the job wrote markers have totals but no marker).
    rolled_up = bool(data["rolledUp"]) or day_rolled_up(settings, day) is not None
    state: RollUp = "rolled-up" if rolled_up else "not-rolled-up"
    return {**data, "rolledUp": rolled_up, "rollup": state}


def month_stats(settings: Settings, owner: str, month: str) -> dict[str, Any]:
    data = owner_month_stats(settings, owner, month)
    days = rolled_up_days(settings, month)
    # The owner's month total names the last day it summed (also for days without a marker).
    through = max(filter(None, [*days, data["through"]]), default=None)
    state: RollUp = "rolled-up" if through else "nothing-rolled-up"
    return {
        **data,
        "through": through,
        "rolledUp": bool(through),
        "rollup": state,
        "rolledUpDays": days,
    }


def run_stats(args: argparse.Namespace, ctx: CommandContext) -> int:
    today = datetime.now(UTC).date()
    try:
        owner = validate_segment("owner", args.owner)
        if args.day:
            data = day_stats(ctx.settings, owner, parse_day(args.day))
            period = data["day"]
        else:
            month = parse_month(args.month) if args.month else month_of(today)
            data = month_stats(ctx.settings, owner, month)
            period = data["month"]
    except PixflareError as err:
        raise CommandError(str(err)) from None
    note = ""
    if data["views"] == 0 and args.day:
        note = day_note(data["rollup"], owner, period)
    elif data["views"] == 0 and data["rollup"] == "rolled-up":
        note = f" (rolled up through {data['through']}: none of {owner}'s images were viewed)"
    elif data["views"] == 0:
        note = f" (nothing rolled up for {period} yet: {JOB_TIME})"
    ctx.emit(data, f"{owner}: {data['views']} views in {period}{note}")
    return 0
