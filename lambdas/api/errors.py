"""What each failure means over HTTP: the one place an error becomes a status code.

The API's own refusals (:class:`ApiError`) carry their status; of the project's error
types only those whose text is written for the caller (a bad name, a refused original,
a taken name) are shown to it. Everything else becomes a generic 503 (worth retrying)
or 500; the handler logs the real error, the caller never sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from lambdas.shared.errors import TransientError
from lambdas.shared.images import NameTakenError
from lambdas.shared.keys import InvalidNameError
from lambdas.shared.originals import OriginalRefused

UNAUTHORIZED_MESSAGE = "a valid API key is required (Authorization: Bearer <key>)"
IMAGE_NOT_FOUND_MESSAGE = "no such image"
ROUTE_NOT_FOUND_MESSAGE = "no such route"
UNAVAILABLE_MESSAGE = "the service is busy or unavailable; try again shortly"
INTERNAL_MESSAGE = "internal error"
RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """A refusal the caller is meant to read: its status and one-line message."""

    status: ClassVar[int] = 400
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):  # noqa: N818 - named after the HTTP status
    status = 400


class Unauthorized(ApiError):  # noqa: N818
    status = 401
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}

    def __init__(self) -> None:
        super().__init__(UNAUTHORIZED_MESSAGE)


class ImageNotFound(ApiError):  # noqa: N818
    """Unknown, malformed, another owner's or deleted: one answer, so nothing leaks."""

    status = 404

    def __init__(self) -> None:
        super().__init__(IMAGE_NOT_FOUND_MESSAGE)


class RouteNotFound(ApiError):  # noqa: N818
    status = 404

    def __init__(self) -> None:
        super().__init__(ROUTE_NOT_FOUND_MESSAGE)


@dataclass(frozen=True)
class Problem:
    """An error as the response says it; ``internal``: a server fault, to be logged."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def internal(self) -> bool:
        return self.status >= 500

    def body(self) -> dict[str, str]:
        return {"message": self.message}


def problem_for(err: BaseException) -> Problem:
    """The response for ``err`` (any exception a request raised)."""
    if isinstance(err, ApiError):
        return Problem(err.status, err.message, dict(err.headers))
    if isinstance(err, InvalidNameError | OriginalRefused):
        return Problem(400, _one_line(err))
    if isinstance(err, NameTakenError):
        return Problem(409, _one_line(err))
    if isinstance(err, TransientError):  # throttled, timed out, denied, out of time
        return Problem(503, UNAVAILABLE_MESSAGE, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return Problem(500, INTERNAL_MESSAGE)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
