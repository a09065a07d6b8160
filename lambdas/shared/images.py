"""The images table: image records, the path claims that keep object keys unique, and
the id prefix items that let a short id (its first 8 characters) find its image.

Access patterns and the keys or indexes serving them are listed in
docs/internals.md. Nothing here scans the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lambdas.shared import aws
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.dynamo import from_item, serialize, to_item, update_expression
from lambdas.shared.errors import ConditionFailedError, PermanentError, PixflareError, aws_errors
from lambdas.shared.keys import IMAGE_ID, ImagePath

VariantsStatus = Literal["pending", "ready", "failed"]
BackupStatus = Literal["none", "pending", "synced", "failed", "deleted"]
# Statuses kept in the sparse by-backup-state index (what backup sync looks for).
INDEXED_BACKUP_STATUSES = frozenset({"pending", "failed", "synced"})

BY_DELETED_INDEX = "by-deleted"
BY_BACKUP_STATE_INDEX = "by-backup-state"
BY_OWNER_INDEX = "by-owner"
BY_ALBUM_INDEX = "by-album"
DELETED_PARTITION = "deleted"


# The largest original accepted: at upload, and when the variant function fetches one.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024

# The shortest image id prefix looked up (as the demo prints ids), and the prefix items'
# key: ``idprefix#<first 8 hex>`` holds the string set ``image_ids`` of the full ids
# starting so, written and removed in the same transaction as the record.
ID_PREFIX_CHARS = 8
ID_PREFIX_SET = "image_ids"
# Each removed record takes 3 actions (record, claim, its prefix item at most): 33 x 3
# stay within DynamoDB's 100 actions a transaction.
MAX_RECORDS_PER_TRANSACTION = 33


class NameTakenError(PermanentError):
    """Another image already owns this owner/album/filename."""


class VariantInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str
    width: int
    height: int
    bytes: int
    content_type: str


class ImageRecord(BaseModel):
    """One image as stored; ``to_status()`` is what ``pixflare status --json`` prints."""

    model_config = ConfigDict(extra="ignore")

    image_id: str
    owner: str
    album: str
    filename: str
    bucket: str
    original_key: str
    content_type: str = "application/octet-stream"
    bytes: int = 0
    sha256: str = ""
    original_etag: str = ""
    # The original (ETag) whose jobs were queued: ingest does nothing twice for one object.
    ingested_etag: str = ""
    # Set while the record only reserves its name for an upload still to arrive.
    upload_expires_at: str | None = None
    created_at: str
    updated_at: str = ""
    variants_status: VariantsStatus = "pending"
    variants_ready: list[str] = Field(default_factory=list)
    variants: dict[str, VariantInfo] = Field(default_factory=dict)
    # The original (its ETag, or sha256) the stored variants were rendered from.
    variants_source: str | None = None
    error: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    backup_status: BackupStatus = "none"
    backup: dict[str, Any] = Field(default_factory=dict)
    # When the image entered its backup status (the by-backup-state index's sort key).
    backup_state_at: str | None = None
    ai: dict[str, Any] | None = None
    deleted_at: str | None = None

    @property
    def path(self) -> ImagePath:
        return ImagePath(self.owner, self.album, self.filename)

    @property
    def upload_status(self) -> Literal["awaiting", "received"]:
        """``awaiting`` while the record only reserves its name (no original has arrived)."""
        return "received" if self.original_etag else "awaiting"

    def to_status(self) -> dict[str, Any]:
        return {
            "imageId": self.image_id,
            "owner": self.owner,
            "album": self.album,
            "filename": self.filename,
            "bucket": self.bucket,
            "original": {
                "key": self.original_key,
                "bytes": self.bytes,
                "content_type": self.content_type,
                "sha256": self.sha256,
            },
            "created_at": self.created_at,
            "upload_status": self.upload_status,
            "upload_expires_at": self.upload_expires_at,
            "variants_status": self.variants_status,
            "variants_ready": list(self.variants_ready),
            "variants": {name: info.model_dump() for name, info in self.variants.items()},
            "error": self.error,
            "timings": dict(self.timings),
            "backup_status": self.backup_status,
            "backup": dict(self.backup),
            "ai": self.ai,
            "deleted_at": self.deleted_at,
        }


def image_pk(image_id: str) -> str:
    return f"image#{image_id}"


def claim_pk(path: ImagePath) -> str:
    return f"path#{path.claim}"


def id_prefix_pk(image_id: str) -> str:
    return f"idprefix#{image_id[:ID_PREFIX_CHARS]}"


def purge_due_at(deleted_at: str, retention_days: int) -> datetime:
    """When a soft-deleted image becomes due: the first daily cleanup after this purges
    it (and frees its name). The one rule the cleanup and the messages use."""
    moment = datetime.fromisoformat(deleted_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment + timedelta(days=retention_days)


def iso_seconds(moment: datetime) -> str:
    """A moment for people to read: ISO 8601 in UTC to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_purge_due(record: ImageRecord, now: datetime, retention_days: int) -> bool:
    return record.deleted_at is not None and purge_due_at(record.deleted_at, retention_days) < now


def album_key(owner: str, album: str) -> str:
    """The by-album index's partition: one owner's album."""
    return f"{owner}/{album}"


def backup_state_fields(
    owner: str, status: BackupStatus, at: str
) -> tuple[dict[str, Any], list[str]]:
    """SET / REMOVE fields that move an image to a backup status, keeping the index in step."""
    fields: dict[str, Any] = {"backup_status": status}
    if status in INDEXED_BACKUP_STATUSES:
        fields["backup_state"] = f"{owner}#{status}"
        fields["backup_state_at"] = at
        return fields, []
    return fields, ["backup_state", "backup_state_at"]


class ImageRepository:
    def __init__(self, table_name: str) -> None:
        self.table = table_name

    def get(self, image_id: str, *, consistent: bool = True) -> ImageRecord | None:
        with aws_errors(f"get image {image_id}"):
            response = aws.dynamodb().get_item(
                TableName=self.table,
                Key={"pk": serialize(image_pk(image_id))},
                ConsistentRead=consistent,
            )
        item = response.get("Item")
        return ImageRecord.model_validate(from_item(item)) if item else None

    def create(self, record: ImageRecord, extra: Mapping[str, Any] | None = None) -> None:
        """Write the record, claim its path and add its id to its prefix item, in one
        transaction."""
        data = {
            "pk": image_pk(record.image_id),
            "album_key": album_key(record.owner, record.album),
            **record.model_dump(exclude_none=True),
            **(extra or {}),
        }
        claim = {
            "pk": claim_pk(record.path),
            "image_id": record.image_id,
            "created_at": record.created_at,
        }
        try:
            with aws_errors(f"create image {record.image_id}"):
                aws.dynamodb().transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": to_item(data),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": to_item(claim),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        self._id_prefix_action("ADD", [record.image_id]),
                    ]
                )
        except ConditionFailedError:
            # An SDK retry of a transaction whose first attempt committed but answered too
            # late fails its own conditions; the claim then names this very image.
            if self.claimed_paths([record.path]).get(record.path.claim) == record.image_id:
                return
            raise NameTakenError(
                f"{record.path.claim} already exists; choose another name or album"
            ) from None

    def update(
        self,
        image_id: str,
        set_fields: Mapping[str, Any] | None = None,
        remove_fields: Iterable[str] = (),
        *,
        condition: str | None = None,
        condition_names: Mapping[str, str] | None = None,
        condition_values: Mapping[str, Any] | None = None,
        return_new: bool = False,
    ) -> ImageRecord | None:
        """Update an existing record; ConditionFailedError if it is gone or the condition fails."""
        expression, names, values = update_expression(
            {**(set_fields or {}), "updated_at": iso(utcnow())}, remove_fields
        )
        full_condition = "attribute_exists(pk)" + (f" AND ({condition})" if condition else "")
        names.update(condition_names or {})
        values.update({k: serialize(v) for k, v in (condition_values or {}).items()})
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": serialize(image_pk(image_id))},
            "UpdateExpression": expression,
            "ConditionExpression": full_condition,
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        with aws_errors(f"update image {image_id}"):
            response = aws.dynamodb().update_item(**kwargs)
        if return_new:
            return ImageRecord.model_validate(from_item(response["Attributes"]))
        return None

    def soft_delete(self, image_id: str, at: str) -> None:
        self.update(
            image_id,
            {"deleted_at": at, "deleted_pk": DELETED_PARTITION},
            condition="attribute_not_exists(deleted_at)",
        )

    # -- conditional updates: each condition written once, here -------------------------
    def update_unless_deleted(
        self,
        image_id: str,
        set_fields: Mapping[str, Any],
        remove_fields: Iterable[str] = (),
        *,
        return_new: bool = False,
    ) -> ImageRecord | None:
        """Update an image that is not soft-deleted."""
        return self.update(
            image_id,
            set_fields,
            remove_fields,
            condition="attribute_not_exists(deleted_at)",
            return_new=return_new,
        )

    def record_ai(self, image_id: str, value: Mapping[str, Any]) -> None:
        """Store labels on an image that is not deleted and whose variants are ready."""
        self.update(
            image_id,
            {"ai": value},
            condition="attribute_not_exists(deleted_at) AND #vs = :ready",
            condition_names={"#vs": "variants_status"},
            condition_values={":ready": "ready"},
        )

    def update_for_owner(self, image_id: str, owner: str, set_fields: Mapping[str, Any]) -> None:
        """Update the image only if it belongs to ``owner``."""
        self.update(
            image_id,
            set_fields,
            condition="#owner = :owner",
            condition_names={"#owner": "owner"},
            condition_values={":owner": owner},
        )

    def update_backup(
        self, image_id: str, set_fields: Mapping[str, Any], remove_fields: Iterable[str] = ()
    ) -> None:
        """Update an image whose backup has not been deleted (a deleted image stays so)."""
        self.update(
            image_id,
            set_fields,
            remove_fields,
            condition="#bs <> :deleted",
            condition_names={"#bs": "backup_status"},
            condition_values={":deleted": "deleted"},
        )

    def update_if_backup_state(
        self, image_id: str, set_fields: Mapping[str, Any], *, status: BackupStatus, since: str
    ) -> None:
        """Update only if the backup is still in ``status``, entered at ``since`` (as read)."""
        self.update(
            image_id,
            set_fields,
            condition="#bs = :status AND #bsa = :since",
            condition_names={"#bs": "backup_status", "#bsa": "backup_state_at"},
            condition_values={":status": status, ":since": since},
        )

    def update_if_never_backed_up(self, image_id: str, set_fields: Mapping[str, Any]) -> None:
        """Update only if the image is not soft-deleted and still has no backup status
        (``none``: uploaded while its owner had no destination)."""
        self.update(
            image_id,
            set_fields,
            condition="attribute_not_exists(deleted_at) AND "
            "(attribute_not_exists(#bs) OR #bs = :none)",
            condition_names={"#bs": "backup_status"},
            condition_values={":none": "none"},
        )

    def delete(self, record: ImageRecord) -> None:
        """Remove the record and its path claim together (already gone counts as done)."""
        self.delete_many([record])

    def delete_many(self, records: Sequence[ImageRecord]) -> int:
        """Each record with its path claim and its id in the prefix item, in transactions
        of at most MAX_RECORDS_PER_TRANSACTION records (a record never spans two);
        absent items are no error."""
        for start in range(0, len(records), MAX_RECORDS_PER_TRANSACTION):
            chunk = records[start : start + MAX_RECORDS_PER_TRANSACTION]
            actions: list[Any] = [
                {"Delete": {"TableName": self.table, "Key": {"pk": serialize(pk)}}}
                for record in chunk
                for pk in (image_pk(record.image_id), claim_pk(record.path))
            ]
            actions.extend(self._id_prefix_removals(r.image_id for r in chunk))
            what = (
                f"delete image {chunk[0].image_id}"
                if len(chunk) == 1
                else (f"delete {len(chunk)} image records")
            )
            with aws_errors(what):
                aws.dynamodb().transact_write_items(TransactItems=actions)
            self._drop_empty_id_prefixes(r.image_id for r in chunk)
        return len(records)

    def restore(self, image_id: str) -> ImageRecord | None:
        """Undo a soft delete (the fields it set); ConditionFailedError if the image is
        gone or not deleted."""
        return self.update(
            image_id,
            remove_fields=["deleted_at", "deleted_pk"],
            condition="attribute_exists(deleted_at)",
            return_new=True,
        )

    # -- id prefixes ------------------------------------------------------------------------
    def _id_prefix_action(self, verb: Literal["ADD", "DELETE"], ids: Sequence[str]) -> Any:
        """ADD ids to, or DELETE them from, their (one) prefix item's set."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": serialize(id_prefix_pk(ids[0]))},
                "UpdateExpression": f"{verb} #ids :ids",
                "ExpressionAttributeNames": {"#ids": ID_PREFIX_SET},
                "ExpressionAttributeValues": {":ids": {"SS": sorted(set(ids))}},
            }
        }

    def _id_prefix_removals(self, image_ids: Iterable[str]) -> list[Any]:
        """One action per prefix item (a transaction may touch an item only once)."""
        by_prefix: dict[str, list[str]] = {}
        for image_id in image_ids:
            by_prefix.setdefault(id_prefix_pk(image_id), []).append(image_id)
        return [self._id_prefix_action("DELETE", ids) for ids in by_prefix.values()]

    def _drop_empty_id_prefixes(self, image_ids: Iterable[str]) -> None:
        """Remove prefix items whose set the removal emptied (DynamoDB drops an empty set,
        not the item; a record made before prefix items existed leaves one such).
        Conditional, so an id added meanwhile keeps its item; a failure leaves an empty
        item, which no lookup minds."""
        for pk in sorted({id_prefix_pk(image_id) for image_id in image_ids}):
            try:
                with aws_errors(f"drop empty {pk}"):
                    aws.dynamodb().delete_item(
                        TableName=self.table,
                        Key={"pk": serialize(pk)},
                        ConditionExpression="attribute_not_exists(#ids)",
                        ExpressionAttributeNames={"#ids": ID_PREFIX_SET},
                    )
            except PixflareError:
                continue

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """The image ids starting with ``prefix`` (at least ID_PREFIX_CHARS lowercase hex),
        from its prefix item: records made before prefix items existed are not there."""
        if len(prefix) < ID_PREFIX_CHARS:
            raise ValueError(f"an id prefix has at least {ID_PREFIX_CHARS} characters")
        with aws_errors(f"look up image ids starting {prefix}"):
            response = aws.dynamodb().get_item(
                TableName=self.table,
                Key={"pk": serialize(id_prefix_pk(prefix))},
                ConsistentRead=True,
            )
        ids = from_item(response.get("Item") or {}).get(ID_PREFIX_SET) or []
        return sorted(str(i) for i in ids if IMAGE_ID.fullmatch(str(i)) and i.startswith(prefix))

    def get_many(self, image_ids: Iterable[str]) -> list[ImageRecord]:
        """The records of these ids that exist (BatchGetItem), in no particular order."""
        keys = [{"pk": serialize(image_pk(i))} for i in dict.fromkeys(image_ids)]
        items = aws.batch_get_items(self.table, keys, "get images", ConsistentRead=True)
        return [ImageRecord.model_validate(from_item(item)) for item in items]

    def claimed_paths(self, paths: Iterable[ImagePath]) -> dict[str, str]:
        """Which of these paths belong to an image: claim -> imageId, by BatchGetItem."""
        wanted = {p.claim: p for p in paths}
        keys = [{"pk": serialize(claim_pk(p))} for p in wanted.values()]
        items = aws.batch_get_items(self.table, keys, "look up image paths", ConsistentRead=True)
        found: dict[str, str] = {}
        for item in items:
            data = from_item(item)
            found[str(data["pk"]).removeprefix("path#")] = str(data["image_id"])
        return found

    def query_index(
        self,
        index: str,
        key_condition: str,
        names: Mapping[str, str],
        values: Mapping[str, Any],
        *,
        limit: int,
        start_key: Mapping[str, Any] | None = None,
        forward: bool = True,
        filter_expression: str | None = None,
    ) -> tuple[list[ImageRecord], dict[str, Any] | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeNames": dict(names),
            "ExpressionAttributeValues": {k: serialize(v) for k, v in values.items()},
            "Limit": limit,
            "ScanIndexForward": forward,
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        with aws_errors(f"query {index}"):
            response = aws.dynamodb().query(**kwargs)
        records = [
            ImageRecord.model_validate(from_item(item)) for item in response.get("Items", [])
        ]
        return records, response.get("LastEvaluatedKey")

    def deleted_before(
        self, cutoff: str, *, limit: int = 100, start_key: Mapping[str, Any] | None = None
    ) -> tuple[list[ImageRecord], dict[str, Any] | None]:
        return self.query_index(
            BY_DELETED_INDEX,
            "#p = :p AND #t < :t",
            {"#p": "deleted_pk", "#t": "deleted_at"},
            {":p": DELETED_PARTITION, ":t": cutoff},
            limit=limit,
            start_key=start_key,
        )

    def list_for_owner(
        self,
        owner: str,
        *,
        album: str | None = None,
        limit: int,
        start_key: Mapping[str, Any] | None = None,
    ) -> tuple[list[ImageRecord], dict[str, Any] | None]:
        """The owner's images (of one album), newest first, soft-deleted ones left out.

        A page can hold fewer than ``limit`` records (deleted ones are filtered after
        the read) and still have a next key; callers page on the key, not the count.
        """
        if album is None:
            index, key, value = BY_OWNER_INDEX, "owner", owner
        else:
            index, key, value = BY_ALBUM_INDEX, "album_key", album_key(owner, album)
        return self.query_index(
            index,
            "#p = :p",
            {"#p": key},
            {":p": value},
            limit=limit,
            start_key=start_key,
            forward=False,
            filter_expression="attribute_not_exists(deleted_at)",
        )

    @staticmethod
    def listing_key(record: ImageRecord, *, album: str | None) -> dict[str, Any]:
        """The ExclusiveStartKey that continues ``list_for_owner`` after ``record``."""
        partition = (
            {"owner": record.owner}
            if album is None
            else {"album_key": album_key(record.owner, album)}
        )
        data = {"pk": image_pk(record.image_id), **partition, "created_at": record.created_at}
        return to_item(data)

    def delete_expired_reservation(self, record: ImageRecord, now: str) -> bool:
        """Free a name held by a reservation whose upload never arrived (the record and
        its claim, in one transaction); False when it is not such a reservation (any more)."""
        try:
            with aws_errors(f"release reservation {record.image_id}"):
                aws.dynamodb().transact_write_items(
                    TransactItems=[
                        {
                            "Delete": {
                                "TableName": self.table,
                                "Key": {"pk": serialize(image_pk(record.image_id))},
                                "ConditionExpression": "#e = :empty AND #x < :now",
                                "ExpressionAttributeNames": {
                                    "#e": "original_etag",
                                    "#x": "upload_expires_at",
                                },
                                "ExpressionAttributeValues": {
                                    ":empty": serialize(""),
                                    ":now": serialize(now),
                                },
                            }
                        },
                        {
                            "Delete": {
                                "TableName": self.table,
                                "Key": {"pk": serialize(claim_pk(record.path))},
                                "ConditionExpression": "image_id = :id",
                                "ExpressionAttributeValues": {":id": serialize(record.image_id)},
                            }
                        },
                        self._id_prefix_action("DELETE", [record.image_id]),
                    ]
                )
        except ConditionFailedError:
            return False
        self._drop_empty_id_prefixes([record.image_id])
        return True

    def by_backup_state(
        self,
        owner: str,
        status: BackupStatus,
        *,
        limit: int,
        start_key: Mapping[str, Any] | None = None,
    ) -> tuple[list[ImageRecord], dict[str, Any] | None]:
        """Oldest first (by when the image entered that state)."""
        return self.query_index(
            BY_BACKUP_STATE_INDEX,
            "#p = :p",
            {"#p": "backup_state"},
            {":p": f"{owner}#{status}"},
            limit=limit,
            start_key=start_key,
        )
