"""The destinations table: one backup destination per owner.

The backup package owns what a destination holds (endpoint, bucket, encrypted
credentials); this module only answers the question every upload asks.
"""

from __future__ import annotations

from lambdas.shared import aws
from lambdas.shared.config import Settings
from lambdas.shared.dynamo import serialize
from lambdas.shared.errors import aws_errors


def destination_exists(settings: Settings, owner: str) -> bool:
    """True when the owner has configured a backup destination (no table, no destination)."""
    if not settings.destinations_table:
        return False
    with aws_errors(f"look up backup destination of {owner}"):
        response = aws.dynamodb().get_item(
            TableName=settings.destinations_table,
            Key={"owner": serialize(owner)},
            ProjectionExpression="#o",
            ExpressionAttributeNames={"#o": "owner"},
        )
    return "Item" in response
