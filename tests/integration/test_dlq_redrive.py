"""`pixflare dlq redrive` by receive, send and delete (the path for endpoints without
StartMessageMoveTask), against moto's queues."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from lambdas.shared import aws
from pixflare.commands import dlq
from pixflare.commands.dlq import QueuePair, move_messages, peek
from tests.support.aws_resources import REGION, Resources, queue_counts, receive_all


class UnorderedQueues:
    """The project's SQS client, with two things moto does not do by itself.

    SQS standard queues promise no order, while moto hands out the oldest
    message first; this delivers the newest first, the order in which a
    redrive once mistook a receive of bounced copies for an empty DLQ. And a
    worker that rejects every copy sent back to the source queue at once, into
    the DLQ, as the worker runtime does with a message it still cannot parse.
    """

    def __init__(self, client: Any, dlq_url: str) -> None:
        self._client = client
        self._dlq_url = dlq_url
        self.bounced: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def receive_message(self, **params: Any) -> dict[str, Any]:
        wanted = params.get("MaxNumberOfMessages", 1)
        got = self._client.receive_message(**{**params, "MaxNumberOfMessages": 10})
        messages = list(reversed(got.get("Messages", [])))
        for extra in messages[wanted:]:
            self._client.change_message_visibility(
                QueueUrl=params["QueueUrl"],
                ReceiptHandle=extra["ReceiptHandle"],
                VisibilityTimeout=0,
            )
        return {**got, "Messages": messages[:wanted]} if messages else got

    def send_message_batch(self, **params: Any) -> dict[str, Any]:
        response = self._client.send_message_batch(**params)
        for entry in response.get("Successful", []):
            self._client.send_message(
                QueueUrl=self._dlq_url,
                MessageBody="(rejected at once)",
                MessageAttributes={
                    "pixflare-source-message-id": {
                        "DataType": "String",
                        "StringValue": entry["MessageId"],
                    }
                },
            )
            self.bounced.append(entry["MessageId"])
        return response


@pytest.fixture
def pair(aws: Resources) -> QueuePair:
    sqs = boto3.client("sqs", region_name=REGION)
    arn = sqs.get_queue_attributes(QueueUrl=aws.dlq_urls["domain"], AttributeNames=["QueueArn"])
    return QueuePair(
        name="domain",
        source_url=aws.queue_urls["domain"],
        source_arn=aws.queue_arns["domain"],
        dlq_url=aws.dlq_urls["domain"],
        dlq_arn=arn["Attributes"]["QueueArn"],
    )


def fill(url: str, bodies: list[str]) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)


def test_bounced_copies_received_first_do_not_end_the_redrive_early(
    pair: QueuePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a DLQ of three messages, a worker that rejects each one again at once,
    # and a queue that hands out the newest message first, one at a time
    originals = ["first", "second", "third"]
    fill(pair.dlq_url, originals)
    queues = UnorderedQueues(aws.sqs(), pair.dlq_url)
    monkeypatch.setattr(dlq, "_sqs", lambda: queues)
    monkeypatch.setattr(dlq, "REDRIVE_BATCH", 1)

    # When the DLQ is redriven
    result = move_messages(pair)

    # Then every original was moved once, even though each move was followed by a
    # receive that found only the copy that had just bounced
    assert result.moved == 3
    assert result.bounced == 3
    moved = sorted(m["Body"] for m in receive_all(pair.source_url))
    assert moved == sorted(originals)
    # and the DLQ holds exactly the three bounced copies, visible again for the
    # operator, and nothing else
    left = receive_all(pair.dlq_url)
    assert len(left) == 3
    assert {
        m["MessageAttributes"]["pixflare-source-message-id"]["StringValue"] for m in left
    } == set(queues.bounced)


def test_a_plain_redrive_moves_everything_and_keeps_attributes(pair: QueuePair) -> None:
    # Given a DLQ of 25 messages (three receive batches), one with a reason attribute
    # (a missing setting: it succeeds once the setting is fixed)
    fill(pair.dlq_url, [f"job-{n}" for n in range(24)])
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=pair.dlq_url,
        MessageBody="job-24",
        MessageAttributes={
            "pixflare-reason": {"DataType": "String", "StringValue": "bad"},
            "pixflare-error-kind": {"DataType": "String", "StringValue": "config"},
        },
    )

    # When it is redriven
    result = move_messages(pair)

    # Then all 25 are on the source queue once, and the DLQ is empty
    assert (result.moved, result.bounced) == (25, 0)
    moved = receive_all(pair.source_url, max_messages=100)
    assert sorted(m["Body"] for m in moved) == sorted(f"job-{n}" for n in range(25))
    tagged = next(m for m in moved if m["Body"] == "job-24")
    assert tagged["MessageAttributes"]["pixflare-reason"]["StringValue"] == "bad"
    assert receive_all(pair.dlq_url) == []


def _put_invalid(url: str, body: str, *, with_kind: bool) -> str:
    attributes: dict[str, Any] = {
        "pixflare-reason": {"DataType": "String", "StringValue": "not valid JSON"}
    }
    if with_kind:
        attributes["pixflare-error-kind"] = {"DataType": "String", "StringValue": "invalid"}
    sent = boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=url, MessageBody=body, MessageAttributes=attributes
    )
    return str(sent["MessageId"])


def test_messages_that_can_never_succeed_are_left_in_the_dlq_unless_included(
    pair: QueuePair,
) -> None:
    # Given a DLQ of 12 invalid messages (half from before the kind attribute: a reason
    # only) among 3 jobs that may succeed, more than one receive batch
    invalid = {_put_invalid(pair.dlq_url, f"bad-{n}", with_kind=n % 2 == 0) for n in range(12)}
    fill(pair.dlq_url, ["job-a", "job-b", "job-c"])

    # When it is redriven
    result = move_messages(pair)

    # Then the three jobs are moved, the invalid ones skipped, and every skipped one is
    # visible in the DLQ again at once (not hidden for the run's visibility timeout)
    assert (result.moved, result.bounced, set(result.skipped)) == (3, 0, invalid)
    assert sorted(m["Body"] for m in receive_all(pair.source_url)) == ["job-a", "job-b", "job-c"]
    assert queue_counts(pair.dlq_url) == (12, 0)

    # And with them included they are moved too
    result = move_messages(pair, skip_invalid=False)
    assert (result.moved, result.skipped) == (12, [])
    assert receive_all(pair.dlq_url) == []


def test_a_look_leaves_every_message_visible_and_counts_without_itself(pair: QueuePair) -> None:
    # Given a DLQ of 12 messages nobody has received
    fill(pair.dlq_url, [f"job-{n}" for n in range(12)])

    # When it is looked at
    first = peek(pair.dlq_url, 10, 12)

    # Then the look shows 10 different messages, received 0 times before it
    assert len({m["messageId"] for m in first}) == 10
    assert {m["receiveCount"] for m in first} == {0}
    assert {(m["kind"], m["reason"], m["redrivable"]) for m in first} == {
        ("maxReceiveCount", None, True)
    }
    # and all 12 are visible again at once, none in flight
    assert queue_counts(pair.dlq_url) == (12, 0)
    # And a second look counts the first: SQS has no peek, a look is a receive
    second = {m["messageId"]: m["receiveCount"] for m in peek(pair.dlq_url, 12, 12)}
    assert len(second) == 12
    assert sorted(second.values()) == [0, 0] + [1] * 10
