"""An upload that fails half-way leaves nothing behind: no record, no path claim, no object."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdas.shared import aws as aws_clients
from lambdas.shared.config import load_settings
from lambdas.shared.errors import TransientError
from lambdas.shared.originals import store_upload
from tests.support.aws_resources import REGION, Resources
from tests.support.env import use_env

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def _server_error(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "InternalError", "Message": "try again"},
         "ResponseMetadata": {"HTTPStatusCode": 500}},
        operation,
    )  # fmt: skip


class FailingS3:
    """The real (moto) client, except for the operations named as failing."""

    def __init__(self, real: Any, failing: set[str]) -> None:
        self._real = real
        self._failing = failing

    def __getattr__(self, name: str) -> Any:
        if name in self._failing:

            def fail(**_kwargs: Any) -> Any:
                raise _server_error(name)

            return fail
        return getattr(self._real, name)


def table_items(env: Resources) -> list[dict[str, Any]]:
    return boto3.client("dynamodb", region_name=REGION).scan(TableName=env.tables["images"])[
        "Items"
    ]


def test_upload_whose_store_and_cleanup_both_fail_leaves_the_name_free(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, aws.env("variant"))
    real = aws_clients.s3()
    # Given S3 failing both the store and the rollback's delete
    monkeypatch.setattr(aws_clients, "s3", lambda: FailingS3(real, {"put_object", "delete_object"}))
    # When an upload is attempted
    with pytest.raises(TransientError):
        store_upload(load_settings(), JPEG, owner="alice", album="trip", filename="a.jpg")
    # Then neither its record nor its path claim is left: the name is not taken
    assert table_items(aws) == []
    monkeypatch.setattr(aws_clients, "s3", lambda: real)
    again = store_upload(load_settings(), JPEG, owner="alice", album="trip", filename="a.jpg")
    assert again.record.original_key == "alice/trip/a.jpg/original"
