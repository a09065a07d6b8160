"""`pixflare views record IMAGE_ID [--count N] [--at ISO8601]` and
`pixflare stats OWNER [--day YYYY-MM-DD | --month YYYY-MM]`.

Recording adds to the image's counter for that day and hour (the analytics job
rolls the counters up the next night); stats reads the roll-ups.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from lambdas.cron.analytics import (
    month_of,
    owner_day_stats,
    owner_month_stats,
    parse_day,
    parse_month,
)
from lambdas.cron.runner import parse_now
from lambdas.cron.view_counters import MAX_COUNT, record_views
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


def run_stats(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        owner = validate_segment("owner", args.owner)
        if args.day:
            data = owner_day_stats(ctx.settings, owner, parse_day(args.day))
            period = data["day"]
        else:
            month = parse_month(args.month) if args.month else month_of(datetime.now(UTC).date())
            data = owner_month_stats(ctx.settings, owner, month)
            period = data["month"]
    except PixflareError as err:
        raise CommandError(str(err)) from None
    note = "" if data["rolledUp"] else " (not rolled up yet: the analytics job runs at 02:00 UTC)"
    ctx.emit(data, f"{owner}: {data['views']} views in {period}{note}")
    return 0
