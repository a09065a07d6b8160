"""Recording views: one atomic counter per image per day, with per-hour attributes.

A view is one UpdateItem with ADD, so any number of writers can count at once
without reading first. The day's counters are spread over VIEW_SHARDS
partitions (``views#{YYYY-MM-DD}#{shard}``), the shard chosen from the image id,
so a busy day is not one hot partition and every image's counter for a day lives
in exactly one item (the roll-up can then total an image page by page). Raw
counters expire after RAW_RETENTION_DAYS; the roll-ups keep the totals.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lambdas.shared import aws
from lambdas.shared.config import Settings
from lambdas.shared.dynamo import serialize
from lambdas.shared.errors import PermanentError, aws_errors
from lambdas.shared.keys import validate_image_id, validate_segment

VIEW_SHARDS = 16
RAW_RETENTION_DAYS = 40
MAX_COUNT = 1_000_000
HOUR_ATTRIBUTES: tuple[str, ...] = tuple(f"h{hour:02d}" for hour in range(24))


class InvalidViewCountError(PermanentError):
    """A view count that is not a positive whole number within bounds."""


def view_shard(image_id: str) -> int:
    """Stable across processes and versions (crc32, not Python's salted hash)."""
    return zlib.crc32(image_id.encode()) % VIEW_SHARDS


def views_partition(day: date, shard: int) -> str:
    return f"views#{day.isoformat()}#{shard}"


def hour_attribute(at: datetime) -> str:
    return HOUR_ATTRIBUTES[at.astimezone(UTC).hour]


def expires_at(day: date, retention_days: int = RAW_RETENTION_DAYS) -> int:
    """Epoch seconds for the table's TTL: the end of ``day`` plus the retention."""
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1 + retention_days)
    return int(end.timestamp())


@dataclass(frozen=True)
class RecordedViews:
    image_id: str
    owner: str
    day: str
    hour: str
    count: int
    day_views: int
    hour_views: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "imageId": self.image_id,
            "owner": self.owner,
            "day": self.day,
            "hour": self.hour,
            "count": self.count,
            "dayViews": self.day_views,
            "hourViews": self.hour_views,
        }


def record_views(
    settings: Settings, *, image_id: str, owner: str, at: datetime, count: int = 1
) -> RecordedViews:
    """Count ``count`` views of an image at ``at`` (one UpdateItem: ADD day and hour counters)."""
    validate_image_id(image_id)
    validate_segment("owner", owner)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidViewCountError(f"count must be a whole number from 1 to {MAX_COUNT}")
    moment = at.astimezone(UTC)
    day = moment.date()
    hour = hour_attribute(moment)
    table = settings.require("stats_table")
    with aws_errors(f"count views of {image_id}"):
        response = aws.dynamodb().update_item(
            TableName=table,
            Key={
                "pk": serialize(views_partition(day, view_shard(image_id))),
                "sk": serialize(image_id),
            },
            UpdateExpression=(
                "SET #owner = if_not_exists(#owner, :owner), #ttl = if_not_exists(#ttl, :ttl) "
                "ADD #views :n, #hour :n"
            ),
            ExpressionAttributeNames={
                "#owner": "owner",
                "#ttl": "expires_at",
                "#views": "views",
                "#hour": hour,
            },
            ExpressionAttributeValues={
                ":owner": serialize(owner),
                ":ttl": serialize(expires_at(day)),
                ":n": serialize(count),
            },
            ReturnValues="UPDATED_NEW",
        )
    attributes = response.get("Attributes", {})
    return RecordedViews(
        image_id=image_id,
        owner=owner,
        day=day.isoformat(),
        hour=hour,
        count=count,
        day_views=int(attributes.get("views", {}).get("N", count)),
        hour_views=int(attributes.get(hour, {}).get("N", count)),
    )
