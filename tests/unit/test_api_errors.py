"""The HTTP API's one error mapping, and the presigned POST's lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from lambdas.api.errors import (
    IMAGE_NOT_FOUND_MESSAGE,
    INTERNAL_MESSAGE,
    UNAUTHORIZED_MESSAGE,
    UNAVAILABLE_MESSAGE,
    BadRequest,
    ImageNotFound,
    RouteNotFound,
    Unauthorized,
    problem_for,
)
from lambdas.api.service import PRESIGNED_POST_SECONDS, post_expiry_seconds
from lambdas.shared.clock import iso
from lambdas.shared.errors import (
    AccessDeniedError,
    ConditionFailedError,
    ConfigError,
    NotFoundError,
    OutOfTimeError,
    PermanentError,
    TransientError,
)
from lambdas.shared.images import NameTakenError
from lambdas.shared.keys import InvalidNameError
from lambdas.shared.originals import OriginalRefused


def test_the_api_s_own_refusals_keep_their_status_and_message() -> None:
    bad = problem_for(BadRequest("limit must be 1..100"))
    assert (bad.status, bad.body()) == (400, {"message": "limit must be 1..100"})
    unauthorized = problem_for(Unauthorized())
    assert unauthorized.status == 401
    assert unauthorized.body() == {"message": UNAUTHORIZED_MESSAGE}
    assert unauthorized.headers == {"WWW-Authenticate": "Bearer"}
    assert problem_for(ImageNotFound()).body() == {"message": IMAGE_NOT_FOUND_MESSAGE}
    assert problem_for(ImageNotFound()).status == 404
    assert problem_for(RouteNotFound()).status == 404


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (InvalidNameError("filename may not be '..'"), 400),
        (OriginalRefused("content type 'text/html' is not accepted"), 400),
        (NameTakenError("alice/trips/a.jpg already exists; choose another name or album"), 409),
    ],
)
def test_user_facing_errors_say_their_reason(err: Exception, status: int) -> None:
    problem = problem_for(err)
    assert problem.status == status and problem.body() == {"message": str(err)}
    assert not problem.internal


def test_a_reason_is_one_line() -> None:
    assert problem_for(InvalidNameError("two\nlines")).message == "two lines"


@pytest.mark.parametrize(
    "err",
    [
        TransientError("query by-owner: ProvisionedThroughputExceededException"),
        OutOfTimeError("not started, 0.5 s left"),
        AccessDeniedError("get image: AccessDenied arn:aws:iam::123:role/x"),
    ],
)
def test_transient_failures_are_503_and_say_nothing_of_why(err: Exception) -> None:
    problem = problem_for(err)
    assert problem.status == 503 and problem.message == UNAVAILABLE_MESSAGE
    assert problem.headers == {"Retry-After": "1"}
    assert problem.internal


class _Model(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Model.model_validate({"n": "x"})
    except ValidationError as err:
        return err
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "err",
    [
        ConfigError("IMAGES_TABLE is not set"),
        NotFoundError("get image: ResourceNotFoundException table gone"),  # a missing table
        ConditionFailedError("lost a race"),
        PermanentError("ValidationException something internal"),
        _validation_error(),  # a stored record that no longer parses: our fault, not theirs
        KeyError("x"),
        RuntimeError("boom"),
    ],
)
def test_anything_else_is_a_generic_500(err: Exception) -> None:
    problem = problem_for(err)
    assert problem.status == 500 and problem.body() == {"message": INTERNAL_MESSAGE}
    assert problem.internal


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_a_presigned_post_lasts_five_minutes_within_the_reservation() -> None:
    assert post_expiry_seconds(None, NOW) == PRESIGNED_POST_SECONDS == 300
    assert post_expiry_seconds(iso(NOW + timedelta(seconds=900)), NOW) == 300
    assert post_expiry_seconds(iso(NOW + timedelta(seconds=120)), NOW) == 120


def test_a_reservation_about_to_end_is_not_presigned() -> None:
    with pytest.raises(TransientError):
        post_expiry_seconds(iso(NOW + timedelta(seconds=5)), NOW)
    with pytest.raises(TransientError):
        post_expiry_seconds(iso(NOW - timedelta(seconds=5)), NOW)
