"""Plain-dict <-> DynamoDB attribute-value conversion, and small update builders.

The low-level client is used everywhere (not the resource API) so that one
cached client per service serves every table and moto / the local stack can
point it anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo_value(v) for v in value]
    return value


def _from_dynamo_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo_value(v) for v in value]
    if isinstance(value, set):
        return sorted(_from_dynamo_value(v) for v in value)
    return value


def serialize(value: Any) -> dict[str, Any]:
    return dict(_serializer.serialize(_to_dynamo_value(value)))


def to_item(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: serialize(v) for k, v in data.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo_value(_deserializer.deserialize(v)) for k, v in item.items()}


def update_expression(
    set_fields: Mapping[str, Any] | None = None,
    remove_fields: Iterable[str] = (),
    add_fields: Mapping[str, int | float] | None = None,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Build ``SET a = :a, ... REMOVE b ADD c :c`` with placeholder names for every attribute."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    clauses: list[str] = []
    sets = []
    for i, (field, value) in enumerate((set_fields or {}).items()):
        names[f"#s{i}"] = field
        values[f":s{i}"] = serialize(value)
        sets.append(f"#s{i} = :s{i}")
    if sets:
        clauses.append("SET " + ", ".join(sets))
    removes = []
    for i, field in enumerate(remove_fields):
        names[f"#r{i}"] = field
        removes.append(f"#r{i}")
    if removes:
        clauses.append("REMOVE " + ", ".join(removes))
    adds = []
    for i, (field, amount) in enumerate((add_fields or {}).items()):
        names[f"#a{i}"] = field
        values[f":a{i}"] = serialize(amount)
        adds.append(f"#a{i} :a{i}")
    if adds:
        clauses.append("ADD " + ", ".join(adds))
    return " ".join(clauses), names, values
