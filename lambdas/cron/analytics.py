"""Analytics (02:00 UTC): roll up the previous UTC day's view counters.

Every total is computed from what it summarises and written with PUT, never
ADD, so running the job twice for one day gives the same numbers.

Phase ``images`` reads each shard partition ``views#{day}#{shard}`` a page at a
time and writes, per image:
- ``image#{id}`` / ``day#{date}``: the image's daily total (and its hours);
- ``owner#{owner}`` / ``image-day#{date}#{id}``: the same total filed under its
  owner, so an owner's day can be summed by one Query (expires with the raw counters);
- ``owners#{date}`` / ``{owner}``: which owners had views that day.

Phase ``owners`` walks ``owners#{date}`` a page at a time; for each owner it sums
the ``image-day`` items into ``owner#{owner}`` / ``day#{date}`` and then the
owner's day items of the month into ``owner#{owner}`` / ``month#{YYYY-MM}``.
Its last step then writes ``rollups`` / ``day#{date}``: the day is rolled up (with
when and the day's counts), which is how ``pixflare stats`` tells a day rolled up
without an owner's views from one not rolled up yet. A re-run overwrites it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lambdas.cron.batch import batch_write
from lambdas.cron.runner import JobName, StepResult
from lambdas.cron.view_counters import HOUR_ATTRIBUTES, VIEW_SHARDS, expires_at, views_partition
from lambdas.shared import aws
from lambdas.shared.clock import iso
from lambdas.shared.config import Settings
from lambdas.shared.dynamo import from_item, serialize, to_item
from lambdas.shared.errors import PermanentError, TransientError, aws_errors

IMAGES_PAGE_SIZE = 500
OWNERS_PAGE_SIZE = 50
# An owner's image-day items are read in pages; this bounds one owner's pages per step.
MAX_PAGES_PER_QUERY = 1_000
# The partition of "this day is rolled up" markers, one item per day (sk ``day#{date}``).
ROLLUPS_PARTITION = "rollups"


# -- pure ---------------------------------------------------------------------------------
def rollup_day(now: datetime) -> date:
    """The day the 02:00 job rolls up: the UTC day before ``now``."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_day_range(month: str) -> tuple[str, str]:
    """Sort-key bounds of an owner's day items in ``YYYY-MM``."""
    return f"day#{month}-01", f"day#{month}-31"


def parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PermanentError(f"not a day (YYYY-MM-DD): {value!r}") from None


def parse_month(value: str) -> str:
    try:
        parsed = datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise PermanentError(f"not a month (YYYY-MM): {value!r}") from None
    return month_of(parsed.date())


@dataclass(frozen=True)
class ImageDay:
    image_id: str
    owner: str | None
    views: int
    hours: dict[str, int] = field(default_factory=dict)


def image_days(items: Iterable[Mapping[str, Any]]) -> list[ImageDay]:
    """Raw counter items (plain dicts) -> per-image daily totals."""
    out = []
    for item in items:
        hours = {h: int(item[h]) for h in HOUR_ATTRIBUTES if int(item.get(h, 0) or 0)}
        owner = item.get("owner")
        out.append(
            ImageDay(
                image_id=str(item["sk"]),
                owner=str(owner) if owner else None,
                views=int(item.get("views", 0) or 0),
                hours=hours,
            )
        )
    return out


def rollup_marker_key(day: date) -> str:
    return f"day#{day.isoformat()}"


def rollup_marker(day: date, rolled_up_at: str, counts: Mapping[str, Any]) -> dict[str, Any]:
    """The item saying ``day`` is rolled up; no TTL: it lives as long as the day totals."""
    return {
        "pk": ROLLUPS_PARTITION,
        "sk": rollup_marker_key(day),
        "day": day.isoformat(),
        "rolled_up_at": rolled_up_at,
        **{name: int(counts.get(name, 0) or 0) for name in ("images", "views", "owners")},
    }


def image_day_writes(day: date, totals: Iterable[ImageDay], computed_at: str) -> list[dict]:
    """PutRequests for a page of image totals, their owner copies and the day's owner set."""
    date_text = day.isoformat()
    ttl = expires_at(day)
    items: list[dict[str, Any]] = []
    owners: set[str] = set()
    for total in totals:
        items.append(
            {
                "pk": f"image#{total.image_id}",
                "sk": f"day#{date_text}",
                "views": total.views,
                "hours": total.hours,
                "owner": total.owner or "",
                "computed_at": computed_at,
            }
        )
        if total.owner:
            owners.add(total.owner)
            items.append(
                {
                    "pk": f"owner#{total.owner}",
                    "sk": f"image-day#{date_text}#{total.image_id}",
                    "views": total.views,
                    "expires_at": ttl,
                }
            )
    items.extend(
        {"pk": f"owners#{date_text}", "sk": owner, "expires_at": ttl} for owner in sorted(owners)
    )
    return [{"PutRequest": {"Item": to_item(item)}} for item in items]


def query_stats(
    table: str,
    key_condition: str,
    names: dict[str, str],
    values: dict[str, Any],
    *,
    limit: int | None = None,
    start_key: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of a stats-table Query (consistent: totals are read right after writing)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": key_condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {k: serialize(v) for k, v in values.items()},
        "ConsistentRead": True,
    }
    if limit:
        kwargs["Limit"] = limit
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    with aws_errors(f"query {table}"):
        response = aws.dynamodb().query(**kwargs)
    items = [from_item(item) for item in response.get("Items", [])]
    return items, response.get("LastEvaluatedKey")


def query_all(
    table: str, key_condition: str, names: dict[str, str], values: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every page of a Query (bounded)."""
    out: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    for _ in range(MAX_PAGES_PER_QUERY):
        items, start = query_stats(table, key_condition, names, values, start_key=start)
        out.extend(items)
        if not start:
            return out
    raise TransientError(f"{values.get(':pk')} has more than {MAX_PAGES_PER_QUERY} pages")


def sum_views(
    table: str, pk: str, *, prefix: str = "", between: tuple[str, str] | None = None
) -> tuple[int, int]:
    """Total ``views`` and item count of one partition's sort-key range."""
    names = {"#pk": "pk", "#sk": "sk"}
    values: dict[str, Any] = {":pk": pk}
    if between:
        condition = "#pk = :pk AND #sk BETWEEN :lo AND :hi"
        values.update({":lo": between[0], ":hi": between[1]})
    else:
        condition = "#pk = :pk AND begins_with(#sk, :prefix)"
        values[":prefix"] = prefix
    items = query_all(table, condition, names, values)
    return sum(int(item.get("views", 0) or 0) for item in items), len(items)


# -- the job ------------------------------------------------------------------------------
class AnalyticsJob:
    name: JobName = "analytics"

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        *,
        day: date | None = None,
        images_page_size: int | None = None,
        owners_page_size: int | None = None,
    ) -> None:
        self.settings = settings
        self.day = day or rollup_day(now)
        self.table = settings.require("stats_table")
        self.computed_at = iso(now)
        self.images_page_size = images_page_size or IMAGES_PAGE_SIZE
        self.owners_page_size = owners_page_size or OWNERS_PAGE_SIZE

    def step(self, cursor: Mapping[str, Any]) -> StepResult:
        phase = cursor.get("phase", "images")
        # The day's running counts ride in the cursor, for the rolled-up marker.
        totals = {name: int(cursor.get(name, 0) or 0) for name in ("images", "views", "owners")}
        if phase == "images":
            return self.images_step(int(cursor.get("shard", 0)), cursor.get("start"), totals)
        if phase == "owners":
            return self.owners_step(cursor.get("start"), totals)
        raise PermanentError(f"unknown analytics phase {phase!r}")

    # -- per image ------------------------------------------------------------------------
    def images_step(
        self, shard: int, start_key: Mapping[str, Any] | None, totals: Mapping[str, int]
    ) -> StepResult:
        if not 0 <= shard < VIEW_SHARDS:
            raise PermanentError(f"shard {shard} out of range")
        items, last_key = query_stats(
            self.table,
            "#pk = :pk",
            {"#pk": "pk"},
            {":pk": views_partition(self.day, shard)},
            limit=self.images_page_size,
            start_key=start_key,
        )
        image_totals = image_days(items)
        writes = image_day_writes(self.day, image_totals, self.computed_at)
        batch_write(self.table, writes)
        counts = {
            "images_rolled_up": len(image_totals),
            "views": sum(t.views for t in image_totals),
        }
        carried = {
            **totals,
            "images": totals["images"] + counts["images_rolled_up"],
            "views": totals["views"] + counts["views"],
        }
        if last_key:
            return StepResult(
                {"phase": "images", "shard": shard, "start": last_key, **carried}, counts
            )
        if shard + 1 < VIEW_SHARDS:
            return StepResult({"phase": "images", "shard": shard + 1, **carried}, counts)
        return StepResult({"phase": "owners", **carried}, counts)

    # -- per owner ------------------------------------------------------------------------
    def owners_step(
        self, start_key: Mapping[str, Any] | None, totals: Mapping[str, int]
    ) -> StepResult:
        date_text = self.day.isoformat()
        items, last_key = query_stats(
            self.table,
            "#pk = :pk",
            {"#pk": "pk"},
            {":pk": f"owners#{date_text}"},
            limit=self.owners_page_size,
            start_key=start_key,
        )
        owners = [str(item["sk"]) for item in items]
        day_items = []
        for owner in owners:
            views, images = sum_views(
                self.table, f"owner#{owner}", prefix=f"image-day#{date_text}#"
            )
            day_items.append(
                {
                    "pk": f"owner#{owner}",
                    "sk": f"day#{date_text}",
                    "views": views,
                    "images": images,
                    "computed_at": self.computed_at,
                }
            )
        batch_write(self.table, [{"PutRequest": {"Item": to_item(i)}} for i in day_items])
        # After the day totals are written (read back consistently): the month sums them.
        month = month_of(self.day)
        month_items = []
        for owner in owners:
            views, days = sum_views(self.table, f"owner#{owner}", between=month_day_range(month))
            month_items.append(
                {
                    "pk": f"owner#{owner}",
                    "sk": f"month#{month}",
                    "views": views,
                    "days": days,
                    "through": date_text,
                    "computed_at": self.computed_at,
                }
            )
        batch_write(self.table, [{"PutRequest": {"Item": to_item(i)}} for i in month_items])
        counts = {"owners_rolled_up": len(owners)}
        carried = {**totals, "owners": totals["owners"] + len(owners)}
        if last_key:
            return StepResult({"phase": "owners", "start": last_key, **carried}, counts)
        # Last: every total of the day is written, so the day is marked rolled up.
        self.mark_rolled_up(carried)
        return StepResult(None, counts)

    def mark_rolled_up(self, totals: Mapping[str, int]) -> None:
        item = rollup_marker(self.day, self.computed_at, totals)
        with aws_errors(f"mark {self.day.isoformat()} rolled up in {self.table}"):
            aws.dynamodb().put_item(TableName=self.table, Item=to_item(item))


# -- reading the roll-ups (pixflare stats) ------------------------------------------------
def owner_day_stats(settings: Settings, owner: str, day: date) -> dict[str, Any]:
    item = _get(settings, f"owner#{owner}", f"day#{day.isoformat()}")
    return {
        "owner": owner,
        "day": day.isoformat(),
        "views": int(item.get("views", 0)) if item else 0,
        "images": int(item.get("images", 0)) if item else 0,
        "rolledUp": item is not None,
    }


def owner_month_stats(settings: Settings, owner: str, month: str) -> dict[str, Any]:
    item = _get(settings, f"owner#{owner}", f"month#{month}")
    lo, hi = month_day_range(month)
    items = query_all(
        settings.require("stats_table"),
        "#pk = :pk AND #sk BETWEEN :lo AND :hi",
        {"#pk": "pk", "#sk": "sk"},
        {":pk": f"owner#{owner}", ":lo": lo, ":hi": hi},
    )
    days = {str(i["sk"]).removeprefix("day#"): int(i.get("views", 0)) for i in items}
    return {
        "owner": owner,
        "month": month,
        "views": int(item.get("views", 0)) if item else 0,
        "through": item.get("through") if item else None,
        "days": days,
        "rolledUp": item is not None,
    }


def day_rolled_up(settings: Settings, day: date) -> dict[str, Any] | None:
    """The day's rolled-up marker (one GetItem), or None when it is not rolled up."""
    return _get(settings, ROLLUPS_PARTITION, rollup_marker_key(day))


def rolled_up_days(settings: Settings, month: str) -> list[str]:
    """The days of ``month`` that are rolled up, oldest first (one Query)."""
    items = query_all(
        settings.require("stats_table"),
        "#pk = :pk AND begins_with(#sk, :prefix)",
        {"#pk": "pk", "#sk": "sk"},
        {":pk": ROLLUPS_PARTITION, ":prefix": f"day#{month}"},
    )
    return sorted(str(item["sk"]).removeprefix("day#") for item in items)


def _get(settings: Settings, pk: str, sk: str) -> dict[str, Any] | None:
    with aws_errors(f"read stats {pk} {sk}"):
        response = aws.dynamodb().get_item(
            TableName=settings.require("stats_table"),
            Key={"pk": serialize(pk), "sk": serialize(sk)},
        )
    item = response.get("Item")
    return from_item(item) if item else None
