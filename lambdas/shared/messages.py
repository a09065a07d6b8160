"""Queue message bodies: JSON with a schema version, validated on receipt.

variant ``{v, imageId, owner}``; backup ``{v, imageId, owner, action, ...}`` (a
delete carries the album and filename, since the record may be gone by then);
domain ``{v, hostname, owner, attempt, round}``; cron continuation
``{v, job, now, cursor}``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import unquote_plus

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from lambdas.shared.errors import InvalidMessageError
from lambdas.shared.keys import InvalidNameError, validate_image_id, validate_segment

SCHEMA_VERSION: Literal[1] = 1
MAX_BODY_BYTES = 256 * 1024


class JobMessage(BaseModel):
    """Base of every queue message: strict, frozen, versioned."""

    model_config = ConfigDict(
        strict=True, frozen=True, extra="forbid", populate_by_name=True, validate_by_alias=True
    )
    kind: ClassVar[str] = "job"
    # Our own messages carry a schema version; messages AWS writes (S3 events) do not.
    versioned: ClassVar[bool] = True

    v: Literal[1] = SCHEMA_VERSION

    def idempotency_key(self) -> str:
        """What makes two deliveries the same job (never the SQS message id)."""
        raise TypeError(f"{type(self).__name__} must define idempotency_key")

    def log_keys(self) -> dict[str, Any]:
        """Fields worth appending to every log line while this job runs."""
        return {}

    def to_body(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


def _owner(value: str) -> str:
    try:
        return validate_segment("owner", value)
    except InvalidNameError as err:
        raise ValueError(str(err)) from None


def _image_id(value: str) -> str:
    try:
        return validate_image_id(value)
    except InvalidNameError as err:
        raise ValueError(str(err)) from None


def _segment(kind: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return validate_segment(kind, value)
        except InvalidNameError as err:
            raise ValueError(str(err)) from None

    return AfterValidator(check)


Owner = Annotated[str, AfterValidator(_owner)]
ImageId = Annotated[str, AfterValidator(_image_id)]
Album = Annotated[str, _segment("album")]
Filename = Annotated[str, _segment("filename")]


class VariantJob(JobMessage):
    kind: ClassVar[str] = "variant"

    image_id: ImageId = Field(alias="imageId")
    owner: Owner

    def idempotency_key(self) -> str:
        return f"variant#{self.image_id}"

    def log_keys(self) -> dict[str, Any]:
        return {"imageId": self.image_id, "owner": self.owner}


class BackupJob(JobMessage):
    kind: ClassVar[str] = "backup"

    image_id: ImageId = Field(alias="imageId")
    owner: Owner
    action: Literal["upload", "delete"]
    # A delete must be self-sufficient: the image record may already be gone.
    album: Album | None = None
    filename: Filename | None = None
    # When the job was asked for: a later upload of the same image is a new job.
    requested_at: str = Field(alias="requestedAt", min_length=1, max_length=40)

    def model_post_init(self, _context: Any) -> None:
        if self.action == "delete" and (self.album is None or self.filename is None):
            raise ValueError("a backup delete must carry album and filename")

    def idempotency_key(self) -> str:
        return f"backup#{self.image_id}#{self.action}#{self.requested_at}"

    def log_keys(self) -> dict[str, Any]:
        return {"imageId": self.image_id, "owner": self.owner, "action": self.action}


class DomainCheck(JobMessage):
    kind: ClassVar[str] = "domain"

    hostname: str = Field(min_length=1, max_length=253)
    owner: Owner
    attempt: int = Field(ge=1, le=10_000)
    # A `domain recheck` starts a new round; checks of an old round are ignored.
    round: int = Field(default=1, ge=1, le=10_000)

    def idempotency_key(self) -> str:
        return f"domain#{self.hostname}#{self.round}#{self.attempt}"

    def log_keys(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "owner": self.owner, "attempt": self.attempt}


class CronContinuation(JobMessage):
    kind: ClassVar[str] = "cron"

    job: Literal["cleanup", "analytics", "backup-sync"]
    now: str = Field(min_length=1, max_length=40)
    cursor: dict[str, Any] = Field(default_factory=dict)
    step: int = Field(default=1, ge=1, le=100_000)

    def idempotency_key(self) -> str:
        return f"cron#{self.job}#{self.now}#{self.step}"

    def log_keys(self) -> dict[str, Any]:
        return {"job": self.job, "step": self.step}


S3_TEST_EVENT = "s3:TestEvent"
# An S3 key as S3 writes it: at most 1,024 bytes of UTF-8, URL-encoded in events.
MAX_S3_KEY_BYTES = 1024


class S3ObjectRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    key: str = Field(min_length=1, max_length=3 * MAX_S3_KEY_BYTES)
    size: int = Field(default=0, ge=0)
    etag: str = Field(default="", alias="eTag", max_length=200)
    sequencer: str = Field(default="", max_length=200)


class S3BucketRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=3, max_length=63)


class S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    bucket: S3BucketRef
    object: S3ObjectRef


class S3EventRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_source: Literal["aws:s3"] = Field(alias="eventSource")
    event_name: str = Field(alias="eventName", max_length=100)
    event_time: str = Field(default="", alias="eventTime", max_length=40)
    s3: S3Entity

    @property
    def bucket(self) -> str:
        return self.s3.bucket.name

    @property
    def key(self) -> str:
        """The object key: S3 URL-encodes it in events (a space arrives as ``+``)."""
        return unquote_plus(self.s3.object.key)


class S3Notification(JobMessage):
    """An S3 event notification as S3 sends it to a queue (not ours: unversioned, and
    fields we do not read are ignored), or the ``s3:TestEvent`` S3 sends when the
    notification is configured."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    kind: ClassVar[str] = "ingest"
    versioned: ClassVar[bool] = False

    records: list[S3EventRecord] = Field(default_factory=list, alias="Records", max_length=100)
    event: str | None = Field(default=None, alias="Event", max_length=100)

    def model_post_init(self, _context: Any) -> None:
        if not self.records and self.event != S3_TEST_EVENT:
            raise ValueError("an S3 event notification with no Records")

    @property
    def is_test_event(self) -> bool:
        return self.event == S3_TEST_EVENT and not self.records

    def idempotency_key(self) -> str:
        if self.is_test_event:
            return "ingest#test-event"
        # One PUT of one object: its ETag and S3's sequencer (or the event time).
        parts = [
            f"{r.bucket}/{r.key}@{r.s3.object.etag}#{r.s3.object.sequencer or r.event_time}"
            for r in self.records
        ]
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return f"ingest#{digest}"

    def log_keys(self) -> dict[str, Any]:
        if self.is_test_event:
            return {"event": self.event}
        return {"keys": [r.key for r in self.records][:10]}


M = TypeVar("M", bound=JobMessage)


def parse_message[M: JobMessage](model: type[M], body: str | bytes) -> M:
    """Validate a message body, or raise InvalidMessageError with a short reason."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidMessageError(f"body is {len(raw)} bytes, over the {MAX_BODY_BYTES} limit")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidMessageError(f"body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidMessageError("body is not a JSON object")
    if model.versioned and data.get("v") != SCHEMA_VERSION:
        raise InvalidMessageError(f"unknown schema version {data.get('v')!r}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
        )
        raise InvalidMessageError(f"{model.kind} message rejected: {reasons}") from None
