"""The domains table: one item per custom hostname (key ``hostname``, GSI ``by-owner``).

Every state change is a conditional write keyed on what the writer saw (the round
and the number of checks done), so a duplicate or stale queue delivery changes
nothing: the second writer loses the condition and stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lambdas.domain.hostnames import verification_name
from lambdas.shared import aws
from lambdas.shared.dynamo import from_item, serialize, to_item, update_expression
from lambdas.shared.errors import (
    ConditionFailedError,
    NotFoundError,
    PermanentError,
    aws_errors,
)

DomainStatus = Literal["pending", "active", "failed", "blocked"]
# Statuses from which `domain recheck` may start a new round.
RECHECKABLE = frozenset({"failed", "blocked"})
LAST_ERROR_LIMIT = 500
# A worker's configuration error on the record: written when a check stopped on a
# missing or bad setting; removed by the next check recorded, or by a new round.
CONFIG_ERROR_FIELDS = ("config_error", "config_error_at")


class HostnameClaimedError(PermanentError):
    """Another owner already added this hostname."""


class DomainRecord(BaseModel):
    """One custom hostname as stored; ``to_status`` is what ``pixflare domain status`` prints."""

    model_config = ConfigDict(extra="ignore")

    hostname: str
    owner: str
    token: str
    status: DomainStatus = "pending"
    round: int = 1
    checks: int = 0
    last_error: str | None = None
    last_checked_at: str | None = None
    # False between recording a check and confirming its follow-up message was sent:
    # a retry after a failed send re-sends it instead of treating itself as a duplicate.
    followup_sent: bool = True
    created_at: str
    updated_at: str
    activated_at: str | None = None
    provider: str | None = None
    # The domain worker stopped on a missing or bad setting (its check is in the DLQ).
    config_error: str | None = None
    config_error_at: str | None = None

    def dns_records(self, target: str) -> list[dict[str, str]]:
        """The two records the user creates at their DNS provider."""
        return [
            {"type": "CNAME", "name": self.hostname, "value": target.rstrip(".")},
            {"type": "TXT", "name": verification_name(self.hostname), "value": self.token},
        ]

    def to_status(self, target: str) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "owner": self.owner,
            "status": self.status,
            "checks": self.checks,
            "round": self.round,
            "last_error": self.last_error,
            "last_checked_at": self.last_checked_at,
            "created_at": self.created_at,
            "activated_at": self.activated_at,
            "provider": self.provider,
            "records": self.dns_records(target),
            "config_error": (
                {"message": self.config_error, "at": self.config_error_at}
                if self.config_error
                else None
            ),
        }


def _condition(
    clauses: Mapping[str, tuple[str, Any]],
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``#c0 = :c0 AND ...`` for attribute -> (operator, value) pairs."""
    parts: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for i, (attribute, (operator, value)) in enumerate(clauses.items()):
        names[f"#c{i}"] = attribute
        if operator == "in":
            placeholders = []
            for j, option in enumerate(value):
                values[f":c{i}_{j}"] = serialize(option)
                placeholders.append(f":c{i}_{j}")
            parts.append(f"#c{i} IN ({', '.join(placeholders)})")
        else:
            values[f":c{i}"] = serialize(value)
            parts.append(f"#c{i} {operator} :c{i}")
    return " AND ".join(parts), names, values


class DomainRepository:
    def __init__(self, table: str) -> None:
        self.table = table

    def get(self, hostname: str) -> DomainRecord | None:
        with aws_errors(f"read domain {hostname}"):
            response = aws.dynamodb().get_item(
                TableName=self.table, Key={"hostname": serialize(hostname)}, ConsistentRead=True
            )
        item = response.get("Item")
        return DomainRecord.model_validate(from_item(item)) if item else None

    def require(self, hostname: str) -> DomainRecord:
        record = self.get(hostname)
        if record is None:
            raise NotFoundError(f"no custom domain {hostname}")
        return record

    def add(self, record: DomainRecord) -> tuple[DomainRecord, bool]:
        """Create the record, or return the one this owner already has: (record, created).

        Another owner's hostname is refused with HostnameClaimedError.
        """
        try:
            with aws_errors(f"add domain {record.hostname}"):
                aws.dynamodb().put_item(
                    TableName=self.table,
                    Item=to_item(record.model_dump(exclude_none=True)),
                    ConditionExpression="attribute_not_exists(hostname)",
                )
            return record, True
        except ConditionFailedError:
            existing = self.require(record.hostname)
        if existing.owner != record.owner:
            raise HostnameClaimedError(f"{record.hostname} is already claimed by another owner")
        return existing, False

    def _update(
        self,
        hostname: str,
        *,
        condition: Mapping[str, tuple[str, Any]],
        set_fields: Mapping[str, Any],
        remove_fields: tuple[str, ...] = (),
    ) -> DomainRecord:
        expression, names, values = update_expression(set_fields, remove_fields)
        cond_expression, cond_names, cond_values = _condition(condition)
        with aws_errors(f"update domain {hostname}"):
            response = aws.dynamodb().update_item(
                TableName=self.table,
                Key={"hostname": serialize(hostname)},
                UpdateExpression=expression,
                ConditionExpression=f"attribute_exists(hostname) AND {cond_expression}",
                ExpressionAttributeNames={**names, **cond_names},
                ExpressionAttributeValues={**values, **cond_values},
                ReturnValues="ALL_NEW",
            )
        return DomainRecord.model_validate(from_item(response["Attributes"]))

    def record_check(
        self,
        hostname: str,
        *,
        round: int,
        attempt: int,
        status: DomainStatus,
        last_error: str | None,
        now: str,
        followup_sent: bool = True,
        provider: str | None = None,
    ) -> DomainRecord:
        """Record the outcome of check ``attempt`` of ``round``.

        Only from the state that check was sent for (pending, same round, attempt - 1
        checks done); otherwise ConditionFailedError and nothing changes.
        """
        fields: dict[str, Any] = {
            "checks": attempt,
            "status": status,
            "last_checked_at": now,
            "updated_at": now,
            "followup_sent": followup_sent,
        }
        removes: tuple[str, ...] = CONFIG_ERROR_FIELDS
        if last_error is None:
            removes = (*removes, "last_error")
        else:
            fields["last_error"] = last_error[:LAST_ERROR_LIMIT]
        if status == "active":
            fields["activated_at"] = now
        if provider is not None:
            fields["provider"] = provider
        return self._update(
            hostname,
            condition={
                "round": ("=", round),
                "checks": ("=", attempt - 1),
                "status": ("=", "pending"),
            },
            set_fields=fields,
            remove_fields=removes,
        )

    def confirm_followup(self, hostname: str, *, round: int, attempt: int, now: str) -> None:
        """Note that the check after ``attempt`` is on the queue."""
        self._update(
            hostname,
            condition={
                "round": ("=", round),
                "checks": ("=", attempt),
                "status": ("=", "pending"),
            },
            set_fields={"followup_sent": True, "updated_at": now},
            remove_fields=CONFIG_ERROR_FIELDS,
        )

    def record_config_error(
        self, hostname: str, *, owner: str, round: int, attempt: int, error: str, now: str
    ) -> DomainRecord:
        """Note that check ``attempt`` of ``round`` stopped on a configuration error.

        Only while that check is the current one (pending, same owner and round, the
        check not recorded yet or recorded with its follow-up unsent); otherwise
        ConditionFailedError and nothing changes: a stale message never marks a newer
        round.
        """
        return self._update(
            hostname,
            condition={
                "owner": ("=", owner),
                "round": ("=", round),
                "status": ("=", "pending"),
                "checks": ("in", [attempt - 1, attempt]),
            },
            set_fields={
                "config_error": error[:LAST_ERROR_LIMIT],
                "config_error_at": now,
                "updated_at": now,
            },
        )

    def start_round(self, record: DomainRecord, *, now: str) -> DomainRecord:
        """A new round of checks for a failed or blocked domain (``domain recheck``)."""
        return self._update(
            record.hostname,
            condition={
                "round": ("=", record.round),
                "status": ("in", sorted(RECHECKABLE)),
            },
            set_fields={
                "round": record.round + 1,
                "checks": 0,
                "status": "pending",
                "followup_sent": False,
                "updated_at": now,
            },
            remove_fields=("last_error", "last_checked_at", *CONFIG_ERROR_FIELDS),
        )
