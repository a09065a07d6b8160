"""Every AWS call ends before the function does: timeouts chosen from the time left."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from lambdas.backup.pipeline import PART_SECONDS
from lambdas.backup.remote import REMOTE_TIMEOUTS, remote_client
from lambdas.cron.backup_sync import VERIFY_SECONDS
from lambdas.cron.runner import STEP_MARGIN_SECONDS
from lambdas.domain.dns_check import CHECK_WORST_CASE_SECONDS, QUERY_TIMEOUT_SECONDS
from lambdas.domain.providers import CloudflareProvider
from lambdas.shared import aws
from lambdas.shared.deadline import Deadline
from lambdas.shared.destinations import Destination, DestinationCredentials
from lambdas.shared.endpoint_policy import EndpointPolicy
from lambdas.shared.errors import OutOfTimeError, TransientError
from lambdas.shared.worker import MIN_SECONDS_TO_START
from lambdas.variant.pipeline import AI_STAGE_SECONDS, VARIANTS_STAGE_SECONDS
from tests.support.events import FakeLambdaContext


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
    with Deadline.in_seconds(seconds_left).bound():
        client = aws.sqs().current()  # type: ignore[attr-defined]
    assert worst_case_of(client) == expected_worst_case


def test_with_too_little_time_left_a_call_is_not_started_and_is_retried_later() -> None:
    calls: list[str] = []
    for each in aws.client("dynamodb").every_client():
        each.meta.events.register("before-send", lambda **kw: calls.append("sent"))
    with Deadline.in_seconds(3.5).bound(), pytest.raises(OutOfTimeError) as refused:
        aws.dynamodb().get_item(TableName="images", Key={"pk": {"S": "x"}})
    assert isinstance(refused.value, TransientError)
    assert "dynamodb: not started, 3.5 s left" in str(refused.value)
    assert calls == []


@given(st.floats(min_value=0, max_value=120, allow_nan=False))
def test_no_call_can_outlive_its_deadline(seconds_left: float) -> None:
    for choices in (aws.AWS_TIMEOUTS, REMOTE_TIMEOUTS):
        with Deadline.in_seconds(seconds_left).bound():
            try:
                chosen = aws.timeouts_for_now(choices, "test")
            except OutOfTimeError:
                assert seconds_left < choices[-1].worst_case_seconds() + aws.REPORT_MARGIN_SECONDS
                continue
        assert chosen.worst_case_seconds() + aws.REPORT_MARGIN_SECONDS <= seconds_left


def seconds_left_now() -> float | None:
    return Deadline.current().seconds_left()


def test_the_deadline_follows_work_handed_to_a_pool_thread() -> None:
    with Deadline.in_seconds(10.0).bound(), ThreadPoolExecutor(max_workers=1) as pool:
        carried = pool.submit(aws.in_this_context(seconds_left_now)).result()
        plain = pool.submit(seconds_left_now).result()
    assert carried is not None and 9.0 < carried <= 10.0
    assert plain is None  # which is why store_variants and the backup parts carry it


def test_backup_destination_calls_fit_the_deadline_too() -> None:
    destination = Destination(owner="alice", bucket="b", endpoint_url="http://127.0.0.1:9")
    credentials = DestinationCredentials("AKIAEXAMPLE0000", SecretStr("secret"))
    allowed = EndpointPolicy(allow_private=True, allow_http=True)
    target = remote_client(destination, credentials, allowed)
    assert worst_case_of(target.current()) == 32  # type: ignore[attr-defined]
    with Deadline.in_seconds(20.0).bound():
        assert worst_case_of(target.current()) == 13  # type: ignore[attr-defined]
    with (
        Deadline.in_seconds(5.0).bound(),
        pytest.raises(OutOfTimeError, match="backup destination"),
    ):
        target.head_bucket(Bucket="b")


# -- the Deadline type ----------------------------------------------------------------------


def test_no_deadline_refuses_nothing() -> None:
    # Given no Lambda context (the CLI, or a job run directly): no deadline, not 60 s
    deadline = Deadline.from_context(None)
    assert deadline.seconds_left() is None
    assert not deadline.expired
    assert deadline.fits(10_000.0)
    deadline.require(10_000.0, "anything")
    assert deadline.cap(5.0, least=0.1, what="x") == 5.0
    assert Deadline.current() == Deadline.none()  # nothing bound outside an invocation


def test_a_deadline_from_a_lambda_context_counts_its_remaining_time() -> None:
    deadline = Deadline.from_context(FakeLambdaContext(remaining_ms=12_000))
    left = deadline.seconds_left()
    assert left is not None and 11.0 < left <= 12.0
    assert deadline.fits(11.0) and not deadline.fits(12.5)
    assert not deadline.expired
    assert Deadline.in_seconds(-0.1).expired


def test_a_call_is_refused_when_it_does_not_fit() -> None:
    deadline = Deadline.in_seconds(5.0)
    deadline.require(4.0, "a short call")  # fits: nothing raised
    with pytest.raises(
        OutOfTimeError, match=r"a long call: not started, [45]\.\d s left"
    ) as refused:
        deadline.require(6.0, "a long call")
    assert isinstance(refused.value, TransientError)  # retried later, like any transient failure


def test_a_part_of_the_work_gets_the_earlier_of_its_budget_and_the_deadline() -> None:
    deadline = Deadline.in_seconds(30.0)
    assert 5.0 < (deadline.within(6.0).seconds_left() or 0) <= 6.0
    assert 23.0 < (deadline.less(4.0).within(60.0).seconds_left() or 0) <= 26.0
    assert Deadline.none().within(6.0).fits(5.0)
    assert Deadline.none().less(4.0) == Deadline.none()
    assert deadline.cap(5.0, least=0.1, what="x") == 5.0
    with pytest.raises(OutOfTimeError):
        Deadline.in_seconds(0.05).cap(5.0, least=0.2, what="the next request")


def test_thresholds_are_the_worst_cases_of_the_clients_they_guard() -> None:
    shortest = aws.AWS_TIMEOUTS[-1].worst_case_seconds()
    margin = aws.REPORT_MARGIN_SECONDS
    assert (shortest, margin) == (3, 1)
    # a record: its first AWS call at the shortest timeouts
    assert MIN_SECONDS_TO_START == aws.MIN_CALL_SECONDS == shortest + margin == 4
    # the variant stages: their calls one after another at the shortest timeouts
    assert VARIANTS_STAGE_SECONDS == 3 * shortest + margin == 10
    assert AI_STAGE_SECONDS == 2 * shortest + margin == 7
    # a backup part: the part at the destination's single-attempt timeouts (13 s), the
    # commit at its shortest (6 s), the record update at AWS's shortest
    assert [t.worst_case_seconds() for t in REMOTE_TIMEOUTS] == [32, 13, 6]
    assert PART_SECONDS == 13 + 6 + shortest + margin == 23
    # a backup verification HEAD: at the destination's full timeouts (32 s, not ~36 s),
    # then the record update and the continuation send
    assert VERIFY_SECONDS == 32 + 2 * shortest + margin == 39
    # the cron runner's margin: the continuation send at the full AWS timeouts
    assert STEP_MARGIN_SECONDS == aws.worst_case_call_seconds() + margin == 21
    # the domain check: its DNS queries and the Cloudflare requests
    assert CHECK_WORST_CASE_SECONDS == 3 * QUERY_TIMEOUT_SECONDS == 6
    provider = CloudflareProvider(api_base="http://127.0.0.1:9", zone_id="z", token=lambda: "t")
    assert provider.worst_case_seconds == 2 * provider.http_timeout == 10


@pytest.mark.parametrize("left", [3.9, 4.0, 4.1, 20.9, 21.0, 25.0])
def test_a_deadline_admits_a_call_exactly_when_its_worst_case_fits(left: float) -> None:
    # The threshold for one call is derived from the timeouts the client would use:
    # the call goes ahead only if the chosen client's worst case ends before the deadline
    with Deadline.in_seconds(left).bound():
        try:
            chosen = aws.timeouts_for_now(aws.AWS_TIMEOUTS, "test")
        except OutOfTimeError:
            assert left < aws.MIN_CALL_SECONDS + 0.01
            return
    assert aws.seconds_needed(chosen) <= left
