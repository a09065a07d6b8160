"""`pixflare views record IMAGE_ID [--count N] [--at ISO8601]` and
`pixflare stats OWNER [--day YYYY-MM-DD | --month YYYY-MM]`.

Recording adds to the image's counter for that day and hour (the analytics job
rolls the counters up the next night); stats reads the roll-ups.

The roll-up writes nothing for an owner without views, so when an owner has no
figures, stats tells from what the roll-up does write (lambdas/cron/analytics.py)
whether the period was rolled up: ``owners#{day}`` lists the owners with views of a
rolled-up day, ``views#{day}#{shard}`` holds the raw counters still to roll up. Its
``rollup`` field says which: ``rolled-up`` (the owner's figures, or none of their
images were viewed), ``not-rolled-up`` (views recorded that wait for the job),
``no-views-recorded`` (a day nobody's images were viewed: nothing to roll up) or,
for a month, ``nothing-rolled-up`` (no day of it rolled up with any views yet).
"""

from __future__ import annotations

import argparse
import calendar
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from lambdas.cron.analytics import (
    month_of,
    owner_day_stats,
    owner_month_stats,
    parse_day,
    parse_month,
    query_stats,
)
from lambdas.cron.runner import parse_now
from lambdas.cron.view_counters import MAX_COUNT, VIEW_SHARDS, record_views, views_partition
from lambdas.shared.config import Settings
from lambdas.shared.errors import PixflareError
from lambdas.shared.images import ImageRepository
from lambdas.shared.keys import validate_image_id, validate_segment
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
        image_id = validate_image_id(args.image_id)
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


RollUp = Literal["rolled-up", "not-rolled-up", "no-views-recorded", "nothing-rolled-up"]
JOB_TIME = "the analytics job rolls each day up at 02:00 UTC the next day"


def day_rollup(
    *, owner_figures: bool, owner_listed: bool, anyone_listed: bool, views_recorded: bool
) -> RollUp:
    """A day's roll-up state for one owner, from what the roll-up has written: the
    owner's day total, the owner (or anyone) in the day's list of owners with views,
    and raw counters for the day. Listed without a total: the job is still running."""
    if owner_figures or (anyone_listed and not owner_listed):
        return "rolled-up"
    if owner_listed or views_recorded:
        return "not-rolled-up"
    return "no-views-recorded"


def day_note(state: RollUp, owner: str, day: str) -> str:
    """What the human line adds when the owner has no figures for the day."""
    return {
        "rolled-up": f" (rolled up: none of {owner}'s images were viewed that day)",
        "not-rolled-up": f" (not rolled up yet: {JOB_TIME}, or run "
        f"`pixflare cron run analytics --day {day}`)",
        "no-views-recorded": f" (no views of anyone's images recorded on {day}: "
        "nothing to roll up)",
        "nothing-rolled-up": "",
    }[state]


def _exists(table: str, pk: str, sk: str | None = None) -> bool:
    condition, names, values = "#pk = :pk", {"#pk": "pk"}, {":pk": pk}
    if sk is not None:
        condition += " AND #sk = :sk"
        names["#sk"] = "sk"
        values[":sk"] = sk
    items, _ = query_stats(table, condition, names, values, limit=1)
    return bool(items)


def day_stats(settings: Settings, owner: str, day: date) -> dict[str, Any]:
    data = owner_day_stats(settings, owner, day)
    table = settings.require("stats_table")
    listing = f"owners#{day.isoformat()}"
    owner_figures = bool(data["rolledUp"])
    anyone_listed = not owner_figures and _exists(table, listing)
    state = day_rollup(
        owner_figures=owner_figures,
        owner_listed=anyone_listed and _exists(table, listing, owner),
        anyone_listed=anyone_listed,
        views_recorded=not (owner_figures or anyone_listed)
        and any(_exists(table, views_partition(day, shard)) for shard in range(VIEW_SHARDS)),
    )
    return {**data, "rolledUp": state == "rolled-up", "rollup": state}


def last_rolled_up_day(settings: Settings, month: str, today: date) -> date | None:
    """The latest day of ``month`` (up to today) the roll-up listed owners with views for."""
    first = date.fromisoformat(f"{month}-01")
    last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    day = min(last, today)
    table = settings.require("stats_table")
    while day >= first:
        if _exists(table, f"owners#{day.isoformat()}"):
            return day
        day -= timedelta(days=1)
    return None


def month_stats(settings: Settings, owner: str, month: str, today: date) -> dict[str, Any]:
    data = owner_month_stats(settings, owner, month)
    if data["rolledUp"]:
        return {**data, "rollup": "rolled-up"}
    through = last_rolled_up_day(settings, month, today)
    if through is None:
        return {**data, "rollup": "nothing-rolled-up"}
    return {**data, "through": through.isoformat(), "rolledUp": True, "rollup": "rolled-up"}


def run_stats(args: argparse.Namespace, ctx: CommandContext) -> int:
    today = datetime.now(UTC).date()
    try:
        owner = validate_segment("owner", args.owner)
        if args.day:
            data = day_stats(ctx.settings, owner, parse_day(args.day))
            period = data["day"]
        else:
            month = parse_month(args.month) if args.month else month_of(today)
            data = month_stats(ctx.settings, owner, month, today)
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
