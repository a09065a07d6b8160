"""What a request may carry, checked before anything is read or written.

The names and the declared type and size are checked again, with the reasons users
see, by ``originals.reserve_upload`` (the one code path both producers share); this
module only refuses what is not even the right shape.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from lambdas.api.errors import BadRequest

# A request body is a few short strings and a number; anything larger is not ours.
MAX_BODY_BYTES = 16 * 1024
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_LIMIT = re.compile(r"[0-9]{1,3}")
# Errors named in a 400's message (the rest are counted).
_SHOWN_ERRORS = 3


class UploadRequest(BaseModel):
    """``POST /v1/uploads``: where the image goes and what it declares itself to be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    album: StrictStr = Field(max_length=1024)
    filename: StrictStr = Field(max_length=1024)
    contentType: StrictStr = Field(max_length=255)
    size: StrictInt = Field(gt=0)


def body_text(body: str | None, *, base64_encoded: bool) -> str:
    """The request body as text (API Gateway may hand it over base64-encoded)."""
    text = body or ""
    if base64_encoded:
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("request body must be UTF-8 JSON") from None
    if len(text.encode()) > MAX_BODY_BYTES:
        raise BadRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    return text


def parse_upload_request(text: str) -> UploadRequest:
    """The body of ``POST /v1/uploads``; BadRequest with a one-line reason otherwise."""
    try:
        data = json.loads(text)
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return UploadRequest.model_validate(data)
    except ValidationError as err:
        raise BadRequest(describe_validation(err)) from None


def describe_validation(err: ValidationError) -> str:
    """Pydantic's errors in one line: ``field: reason; field: reason``."""
    problems = err.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(p) for p in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in problems[:_SHOWN_ERRORS]
    ]
    if len(problems) > _SHOWN_ERRORS:
        parts.append(f"and {len(problems) - _SHOWN_ERRORS} more")
    return " ".join("; ".join(parts).split())


def parse_limit(raw: str | None) -> int:
    """``limit`` of a listing: 1..100, 20 when absent."""
    if raw is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)
