"""Message models: strict, versioned, and every rejection says why."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdas.shared.errors import InvalidMessageError
from lambdas.shared.messages import (
    MAX_BODY_BYTES,
    BackupJob,
    CronContinuation,
    DomainCheck,
    VariantJob,
    parse_message,
)

IMAGE_ID = "ab" * 16


def body(**fields: object) -> str:
    return json.dumps({"v": 1, **fields})


def test_variant_job_round_trips_with_contract_field_names() -> None:
    job = parse_message(VariantJob, body(imageId=IMAGE_ID, owner="alice"))
    assert job.image_id == IMAGE_ID
    assert json.loads(job.to_body()) == {"v": 1, "imageId": IMAGE_ID, "owner": "alice"}


def test_backup_delete_carries_what_it_needs() -> None:
    job = parse_message(
        BackupJob,
        body(
            imageId=IMAGE_ID,
            owner="alice",
            action="delete",
            album="trip",
            filename="a.jpg",
            requestedAt="2026-01-01T00:00:00Z",
        ),
    )
    assert (job.album, job.filename) == ("trip", "a.jpg")
    with pytest.raises(InvalidMessageError, match="album and filename"):
        parse_message(
            BackupJob, body(imageId=IMAGE_ID, owner="alice", action="delete", requestedAt="t")
        )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ("", "not JSON"),
        (json.dumps({"imageId": IMAGE_ID, "owner": "a"}), "schema version"),
        (body(v=2, imageId=IMAGE_ID, owner="a"), "schema version"),
        (json.dumps({"v": "1", "imageId": IMAGE_ID, "owner": "a"}), "schema version"),
        (body(owner="alice"), "imageId"),
        (body(imageId=IMAGE_ID), "owner"),
        (body(imageId=IMAGE_ID, owner="alice", extra=1), "extra"),
        (body(imageId=IMAGE_ID, owner="../bob"), "owner"),
        (body(imageId="../../" + "a" * 26, owner="alice"), "imageId"),
        (body(imageId=IMAGE_ID, owner="al\u0000ice"), "owner"),
        (body(imageId=123, owner="alice"), "imageId"),
    ],
)
def test_invalid_variant_messages_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidMessageError, match=reason):
        parse_message(VariantJob, raw)


def test_body_over_the_sqs_limit_is_rejected_before_parsing() -> None:
    big = body(imageId=IMAGE_ID, owner="alice", pad="x" * MAX_BODY_BYTES)
    with pytest.raises(InvalidMessageError, match="over the"):
        parse_message(VariantJob, big)


def test_invalid_utf8_is_a_clear_rejection() -> None:
    with pytest.raises(InvalidMessageError, match="not JSON"):
        parse_message(VariantJob, b"\xff\xfe{")


def test_domain_check_attempt_bounds() -> None:
    ok = parse_message(DomainCheck, body(hostname="img.example.com", owner="a", attempt=1))
    assert ok.round == 1
    with pytest.raises(InvalidMessageError, match="attempt"):
        parse_message(DomainCheck, body(hostname="img.example.com", owner="a", attempt=0))
    with pytest.raises(InvalidMessageError, match="attempt"):
        parse_message(DomainCheck, body(hostname="img.example.com", owner="a", attempt=True))


def test_idempotency_keys_name_the_job_not_the_delivery() -> None:
    a = VariantJob(imageId=IMAGE_ID, owner="alice")
    b = VariantJob(imageId=IMAGE_ID, owner="alice")
    assert a.idempotency_key() == b.idempotency_key() == f"variant#{IMAGE_ID}"
    first = DomainCheck(hostname="h.example.com", owner="a", attempt=1)
    second = DomainCheck(hostname="h.example.com", owner="a", attempt=2)
    assert first.idempotency_key() != second.idempotency_key()
    cron = CronContinuation(job="cleanup", now="2026-01-01T00:00:00Z", cursor={"k": 1}, step=2)
    assert cron.idempotency_key() == "cron#cleanup#2026-01-01T00:00:00Z#2"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "imageId",
                "owner",
                "action",
                "album",
                "filename",
                "requestedAt",
                "hostname",
                "attempt",
                "x",
            ]
        ),
        json_values,
        max_size=7,
    )
)
def test_any_json_object_either_parses_or_is_rejected_cleanly(data: dict[str, object]) -> None:
    raw = json.dumps(data)
    for model in (VariantJob, BackupJob, DomainCheck):
        try:
            job = parse_message(model, raw)
        except InvalidMessageError:
            continue
        # Whatever parses re-serializes to a body that parses to the same job.
        assert parse_message(model, job.to_body()) == job
