"""The destinations table: one backup destination per owner.

An item holds where the owner's originals go (endpoint, region, bucket, key prefix,
addressing style, whether objects are encrypted) and the owner's credentials as a
KMS ciphertext bound to the owner (encryption context ``{"owner": owner}``). The
plaintext credentials exist only inside the backup function and the restore
command, never in a log line, an error message or a command's output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import Binary
from pydantic import SecretStr

from lambdas.shared import aws
from lambdas.shared.config import Settings
from lambdas.shared.dynamo import from_item, serialize, to_item
from lambdas.shared.errors import ConditionFailedError, PermanentError, aws_errors

ALL_DESTINATIONS_INDEX = "all-destinations"
DESTINATION_KIND = "destination"
# Read only the key: whether an owner has a destination, not what it is.
_OWNER_ONLY: dict[str, Any] = {
    "ProjectionExpression": "#o",
    "ExpressionAttributeNames": {"#o": "owner"},
}


def destination_exists(settings: Settings, owner: str) -> bool:
    """True when the owner has configured a backup destination (no table, no destination)."""
    if not settings.destinations_table:
        return False
    return DestinationRepository(settings.destinations_table).exists(owner)


@dataclass(frozen=True)
class DestinationCredentials:
    access_key_id: str
    secret_access_key: SecretStr = field(repr=False)

    def hint(self) -> str:
        """Enough of the key id to recognise it; never the secret."""
        key = self.access_key_id
        return f"{key[:4]}…{key[-4:]}" if len(key) >= 12 else "…"


@dataclass(frozen=True)
class Destination:
    owner: str
    bucket: str
    endpoint_url: str = ""
    region: str = ""
    prefix: str = ""
    path_style: bool = False
    encrypt: bool = False
    credentials_ciphertext: bytes = field(default=b"", repr=False)
    access_key_hint: str = ""
    created_at: str = ""
    updated_at: str = ""
    # The ``updated_at`` of the set whose backfill (queueing the owner's earlier images)
    # finished; differing from ``updated_at``, that backfill was interrupted.
    backfilled_at: str = ""

    @property
    def backfill_finished(self) -> bool:
        return bool(self.backfilled_at) and self.backfilled_at == self.updated_at

    def object_key(self, owner: str, album: str, filename: str) -> str:
        return f"{self.prefix}{owner}/{album}/{filename}"

    def to_public(self) -> dict[str, Any]:
        """What commands may show: everything but the credentials."""
        return {
            "owner": self.owner,
            "endpoint": self.endpoint_url or "(AWS)",
            "region": self.region,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "pathStyle": self.path_style,
            "encrypt": self.encrypt,
            "accessKeyId": self.access_key_hint,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    def to_item(self) -> dict[str, Any]:
        return to_item(
            {
                "owner": self.owner,
                "kind": DESTINATION_KIND,
                "endpoint_url": self.endpoint_url,
                "region": self.region,
                "bucket": self.bucket,
                "prefix": self.prefix,
                "path_style": self.path_style,
                "encrypt": self.encrypt,
                "credentials": self.credentials_ciphertext,
                "access_key_hint": self.access_key_hint,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "backfilled_at": self.backfilled_at,
            }
        )

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Destination:
        data = from_item(item)
        blob = data.get("credentials", b"")
        if isinstance(blob, Binary):
            blob = blob.value  # type: ignore[attr-defined]
        return cls(
            owner=str(data["owner"]),
            bucket=str(data.get("bucket", "")),
            endpoint_url=str(data.get("endpoint_url", "")),
            region=str(data.get("region", "")),
            prefix=str(data.get("prefix", "")),
            path_style=bool(data.get("path_style", False)),
            encrypt=bool(data.get("encrypt", False)),
            credentials_ciphertext=bytes(blob),
            access_key_hint=str(data.get("access_key_hint", "")),
            created_at=str(data.get("created_at", "")),
            updated_at=str(data.get("updated_at", "")),
            backfilled_at=str(data.get("backfilled_at", "")),
        )


class CredentialsUnreadableError(PermanentError):
    """The stored credentials do not decrypt for this owner (wrong key or context)."""


def encrypt_credentials(
    settings: Settings, owner: str, credentials: DestinationCredentials
) -> bytes:
    plaintext = json.dumps(
        {
            "accessKeyId": credentials.access_key_id,
            "secretAccessKey": credentials.secret_access_key.get_secret_value(),
        }
    ).encode()
    with aws_errors(f"encrypt backup credentials of {owner}"):
        response = aws.kms().encrypt(
            KeyId=settings.require("backup_kms_key_id"),
            Plaintext=plaintext,
            EncryptionContext={"owner": owner},
        )
    return bytes(response["CiphertextBlob"])


def decrypt_credentials(destination: Destination) -> DestinationCredentials:
    if not destination.credentials_ciphertext:
        raise CredentialsUnreadableError(f"destination of {destination.owner} has no credentials")
    with aws_errors(f"decrypt backup credentials of {destination.owner}"):
        response = aws.kms().decrypt(
            CiphertextBlob=destination.credentials_ciphertext,
            EncryptionContext={"owner": destination.owner},
        )
    try:
        data = json.loads(response["Plaintext"])
        return DestinationCredentials(
            access_key_id=str(data["accessKeyId"]),
            secret_access_key=SecretStr(str(data["secretAccessKey"])),
        )
    except (ValueError, KeyError, TypeError):
        raise CredentialsUnreadableError(
            f"stored credentials of {destination.owner} are malformed; run `pixflare backup set`"
        ) from None


class DestinationRepository:
    def __init__(self, table_name: str) -> None:
        self.table = table_name

    def get(self, owner: str) -> Destination | None:
        with aws_errors(f"get backup destination of {owner}"):
            response = aws.dynamodb().get_item(
                TableName=self.table, Key={"owner": serialize(owner)}, ConsistentRead=True
            )
        item = response.get("Item")
        return Destination.from_item(item) if item else None

    def exists(self, owner: str) -> bool:
        with aws_errors(f"look up backup destination of {owner}"):
            response = aws.dynamodb().get_item(
                TableName=self.table, Key={"owner": serialize(owner)}, **_OWNER_ONLY
            )
        return "Item" in response

    def owners_among(self, owners: Iterable[str]) -> set[str]:
        """Which of these owners have a destination (BatchGetItem, 100 keys a call)."""
        keys = [{"owner": serialize(owner)} for owner in sorted(set(owners))]
        items = aws.batch_get_items(self.table, keys, "look up backup destinations", **_OWNER_ONLY)
        return {str(from_item(item)["owner"]) for item in items}

    def put(self, destination: Destination) -> None:
        """Create or replace the owner's destination (one per owner)."""
        with aws_errors(f"save backup destination of {destination.owner}"):
            aws.dynamodb().put_item(TableName=self.table, Item=destination.to_item())

    def mark_backfilled(self, owner: str, updated_at: str) -> bool:
        """Record that the backfill of the set saved at ``updated_at`` finished; False when
        the destination was set again (or removed) meanwhile: that set's backfill counts."""
        try:
            with aws_errors(f"record backfill of {owner}"):
                aws.dynamodb().update_item(
                    TableName=self.table,
                    Key={"owner": serialize(owner)},
                    UpdateExpression="SET #b = :u",
                    ConditionExpression="#u = :u",
                    ExpressionAttributeNames={"#b": "backfilled_at", "#u": "updated_at"},
                    ExpressionAttributeValues={":u": serialize(updated_at)},
                )
        except ConditionFailedError:
            return False
        return True

    def delete(self, owner: str) -> None:
        with aws_errors(f"delete backup destination of {owner}"):
            aws.dynamodb().delete_item(TableName=self.table, Key={"owner": serialize(owner)})

    def owners(
        self, *, limit: int = 100, start_key: Mapping[str, Any] | None = None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """Owners with a destination, in owner order, a page at a time (GSI, never a scan)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": ALL_DESTINATIONS_INDEX,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": "kind", **_OWNER_ONLY["ExpressionAttributeNames"]},
            "ExpressionAttributeValues": {":k": serialize(DESTINATION_KIND)},
            "ProjectionExpression": _OWNER_ONLY["ProjectionExpression"],
            "Limit": limit,
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        with aws_errors("list backup destinations"):
            response = aws.dynamodb().query(**kwargs)
        owners = [str(from_item(item)["owner"]) for item in response.get("Items", [])]
        return owners, response.get("LastEvaluatedKey")
