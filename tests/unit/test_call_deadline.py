"""Every AWS call ends before the function does: timeouts chosen from the time left."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from lambdas.backup.remote import REMOTE_TIMEOUTS, remote_client
from lambdas.shared import aws
from lambdas.shared.destinations import Destination, DestinationCredentials
from lambdas.shared.errors import OutOfTimeError, TransientError


def worst_case_of(client: object) -> float:
    """The worst case of a real botocore client, from its own configuration."""
    config = client._client_config  # type: ignore[attr-defined]
    timeouts = aws.Timeouts(
        config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]
    )
    return timeouts.worst_case_seconds()


def test_without_a_deadline_a_call_gets_the_longest_timeouts() -> None:
    client = aws.s3().current()  # type: ignore[attr-defined]
    assert worst_case_of(client) == aws.worst_case_call_seconds() == 20


@pytest.mark.parametrize(
    ("seconds_left", "expected_worst_case"),
    [(30.0, 20.0), (21.5, 20.0), (20.9, 7.0), (8.5, 7.0), (7.9, 3.0), (4.5, 3.0)],
)
def test_a_call_gets_the_longest_timeouts_that_end_before_the_deadline(
    seconds_left: float, expected_worst_case: float
) -> None:
    with aws.call_deadline(seconds_left):
        client = aws.sqs().current()  # type: ignore[attr-defined]
    assert worst_case_of(client) == expected_worst_case


def test_with_too_little_time_left_a_call_is_not_started_and_is_retried_later() -> None:
    calls: list[str] = []
    for each in aws.client("dynamodb").every_client():
        each.meta.events.register("before-send", lambda **kw: calls.append("sent"))
    with aws.call_deadline(3.5), pytest.raises(OutOfTimeError) as refused:
        aws.dynamodb().get_item(TableName="images", Key={"pk": {"S": "x"}})
    assert isinstance(refused.value, TransientError)
    assert "dynamodb: not started, 3.5 s left" in str(refused.value)
    assert calls == []


@given(st.floats(min_value=0, max_value=120, allow_nan=False))
def test_no_call_can_outlive_its_deadline(seconds_left: float) -> None:
    for choices in (aws.AWS_TIMEOUTS, REMOTE_TIMEOUTS):
        with aws.call_deadline(seconds_left):
            try:
                chosen = aws.timeouts_for_now(choices, "test")
            except OutOfTimeError:
                assert seconds_left < choices[-1].worst_case_seconds() + aws.REPORT_MARGIN_SECONDS
                continue
        assert chosen.worst_case_seconds() + aws.REPORT_MARGIN_SECONDS <= seconds_left


def test_the_deadline_follows_work_handed_to_a_pool_thread() -> None:
    with aws.call_deadline(10.0), ThreadPoolExecutor(max_workers=1) as pool:
        carried = pool.submit(aws.in_this_context(aws.seconds_left)).result()
        plain = pool.submit(aws.seconds_left).result()
    assert carried is not None and 9.0 < carried <= 10.0
    assert plain is None  # which is why store_variants and the backup parts carry it


def test_backup_destination_calls_fit_the_deadline_too() -> None:
    destination = Destination(owner="alice", bucket="b", endpoint_url="http://127.0.0.1:9")
    credentials = DestinationCredentials("AKIAEXAMPLE0000", SecretStr("secret"))
    target = remote_client(destination, credentials)
    assert worst_case_of(target.current()) == 32  # type: ignore[attr-defined]
    with aws.call_deadline(20.0):
        assert worst_case_of(target.current()) == 13  # type: ignore[attr-defined]
    with aws.call_deadline(5.0), pytest.raises(OutOfTimeError, match="backup destination"):
        target.head_bucket(Bucket="b")
