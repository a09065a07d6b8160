"""`pixflare dlq list` and `pixflare dlq redrive QUEUE`: the dead-letter queues.

Each DLQ is found from its source queue's RedrivePolicy, so the command needs
nothing beyond the queue URLs the stack outputs. Redrive uses SQS's
StartMessageMoveTask where the endpoint has it; otherwise (moto, older
endpoints) it moves messages itself: receive, send to the source queue, and only
then delete from the DLQ, with the message id as a guard so no message is sent
twice in one run.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.shared import aws
from lambdas.shared.config import Settings
from pixflare.context import CommandContext, CommandError

QUEUES = {
    "variant": "variant_queue_url",
    "backup": "backup_queue_url",
    "domain": "domain_queue_url",
    "cron": "cron_queue_url",
    "ingest": "ingest_queue_url",
}
PEEK_LIMIT = 10
BODY_PREVIEW = 160
REDRIVE_BATCH = 10
MAX_REDRIVE_ROUNDS = 1_000  # x 10 messages: far beyond any DLQ worth redriving by hand
REDRIVE_VISIBILITY_SECONDS = 60  # we own a received message this long while moving it
_UNSUPPORTED = {
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAction",
    "NotImplemented",
    "UnknownOperationException",
}


def register(subparsers: Any) -> None:
    dlq = subparsers.add_parser("dlq", help="dead-letter queues: look, and redrive")
    commands = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list", help="each queue's DLQ: depth and a peek at its messages with their reason"
    )
    listing.set_defaults(func=run_list)
    redrive = commands.add_parser("redrive", help="move a DLQ's messages back to its source queue")
    redrive.add_argument(
        "queue",
        choices=tuple(QUEUES),
        metavar="QUEUE",
        help="variant, backup, domain, cron or ingest",
    )
    redrive.set_defaults(func=run_redrive)


def _sqs() -> Any:
    # Untyped on purpose: messages are handled as plain dicts here.
    return aws.sqs()


@dataclass(frozen=True)
class QueuePair:
    name: str
    source_url: str
    source_arn: str
    dlq_url: str
    dlq_arn: str


def _attributes(url: str, *names: str) -> dict[str, str]:
    response = _sqs().get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
    return dict(response.get("Attributes", {}))


def queue_pair(settings: Settings, name: str) -> QueuePair | None:
    source_url = getattr(settings, QUEUES[name])
    if not source_url:
        return None
    attributes = _attributes(source_url, "QueueArn", "RedrivePolicy")
    policy = json.loads(attributes.get("RedrivePolicy") or "{}")
    dlq_arn = str(policy.get("deadLetterTargetArn", ""))
    if not dlq_arn:
        return None
    # An SQS ARN ends in the queue name; GetQueueUrl turns it into the URL.
    dlq_url = _sqs().get_queue_url(QueueName=dlq_arn.rsplit(":", 1)[-1])["QueueUrl"]
    return QueuePair(name, source_url, attributes["QueueArn"], dlq_url, dlq_arn)


def peek(url: str, limit: int = PEEK_LIMIT) -> list[dict[str, Any]]:
    """Look at up to ``limit`` messages without taking them (visibility 0)."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(3):  # bounded: a few receives find what a single one may miss
        got = (
            _sqs()
            .receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, limit),
                VisibilityTimeout=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            .get("Messages", [])
        )
        for message in got:
            attributes = message.get("MessageAttributes", {})
            body = message.get("Body", "")
            seen.setdefault(
                message["MessageId"],
                {
                    "messageId": message["MessageId"],
                    "reason": attributes.get("pixflare-reason", {}).get("StringValue"),
                    "receiveCount": int(
                        message.get("Attributes", {}).get("ApproximateReceiveCount", "0")
                    ),
                    "body": body if len(body) <= BODY_PREVIEW else body[:BODY_PREVIEW] + "...",
                },
            )
        if len(seen) >= limit or not got:
            break
    return list(seen.values())[:limit]


def run_list(args: argparse.Namespace, ctx: CommandContext) -> int:
    report: list[dict[str, Any]] = []
    for name in QUEUES:
        pair = queue_pair(ctx.settings, name)
        if pair is None:
            continue
        attributes = _attributes(
            pair.dlq_url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
        )
        report.append(
            {
                "queue": name,
                "dlqUrl": pair.dlq_url,
                "depth": int(attributes.get("ApproximateNumberOfMessages", "0")),
                "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
                "messages": peek(pair.dlq_url),
            }
        )

    def human() -> str:
        if not report:
            return "no queues (the stack was deployed with enableQueues=false)"
        lines = []
        for entry in report:
            lines.append(f"{entry['queue']:<8} {entry['depth']} message(s)  {entry['dlqUrl']}")
            for message in entry["messages"]:
                reason = message["reason"] or "failed after maxReceiveCount receives"
                lines.append(f"    {message['messageId']}  {reason}")
                lines.append(f"        {message['body']}")
        return "\n".join(lines)

    ctx.emit(report, human)
    return 0


def _start_move_task(pair: QueuePair) -> str | None:
    """The task handle, or None when the endpoint does not implement message move tasks."""
    # One attempt: an endpoint without the operation should not be asked three times.
    client = aws._session().client(
        "sqs", config=aws.client_config(retries={"mode": "standard", "total_max_attempts": 1})
    )
    try:
        response = client.start_message_move_task(
            SourceArn=pair.dlq_arn, DestinationArn=pair.source_arn
        )
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        # moto answers an operation it lacks with a bare 500 (code "500"); AWS's own
        # 5xx errors carry a named code and are raised.
        if code in _UNSUPPORTED or (status in (500, 501) and not code.isalpha()):
            return None
        raise
    return str(response.get("TaskHandle", ""))


def _clean_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    cleaned = {}
    for name, value in attributes.items():
        entry = {"DataType": value["DataType"]}
        for key in ("StringValue", "BinaryValue"):
            if key in value:
                entry[key] = value[key]
        cleaned[name] = entry
    return cleaned


@dataclass
class MoveResult:
    moved: int = 0  # sent to the source queue and deleted from the DLQ
    bounced: int = 0  # copies this run sent that failed straight back; left in the DLQ


def move_messages(pair: QueuePair) -> MoveResult:
    """Receive from the DLQ, send to the source queue, then delete; never lose or duplicate.

    Guards, all within one run: a message already sent is never sent again (its
    delete is retried instead); a message this run put on the source queue that
    failed straight back into the DLQ is left there, so an unfixed poison
    message cannot ping-pong. Those bounced copies are held (kept invisible)
    until the run ends rather than released at once: SQS returns messages in no
    particular order, and a receive that found only bounced copies must not be
    mistaken for an empty DLQ while other messages wait behind them. The run
    ends on the first receive that finds nothing.
    """
    sqs = _sqs()
    sent: set[str] = set()  # DLQ message ids already copied to the source queue
    created: set[str] = set()  # ids of the copies this run sent
    held: dict[str, dict[str, Any]] = {}  # bounced copies, by message id
    result = MoveResult()
    try:
        for _ in range(MAX_REDRIVE_ROUNDS):
            messages = sqs.receive_message(
                QueueUrl=pair.dlq_url,
                MaxNumberOfMessages=REDRIVE_BATCH,
                VisibilityTimeout=REDRIVE_VISIBILITY_SECONDS,
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            # A held copy whose visibility ran out comes round again: hold it again,
            # under its newest receipt handle.
            held.update({m["MessageId"]: m for m in messages if _origin(m) & created})
            mine = [m for m in messages if not (_origin(m) & created)]
            if mine:
                _move_batch(pair, mine, sent, created, result)
    finally:
        result.bounced = len(held)
        _release(pair.dlq_url, list(held.values()))
    return result


def _move_batch(
    pair: QueuePair,
    mine: list[dict[str, Any]],
    sent: set[str],
    created: set[str],
    result: MoveResult,
) -> None:
    sqs = _sqs()
    fresh = [m for m in mine if m["MessageId"] not in sent]
    if fresh:
        response = sqs.send_message_batch(
            QueueUrl=pair.source_url,
            Entries=[
                {
                    "Id": str(index),
                    "MessageBody": message["Body"],
                    **(
                        {"MessageAttributes": _clean_attributes(message["MessageAttributes"])}
                        if message.get("MessageAttributes")
                        else {}
                    ),
                }
                for index, message in enumerate(fresh)
            ],
        )
        for entry in response.get("Successful", []):
            sent.add(fresh[int(entry["Id"])]["MessageId"])
            created.add(str(entry["MessageId"]))
    # Delete only what has been sent (now or earlier in this run); the rest stays.
    done = [m for m in mine if m["MessageId"] in sent]
    if done:
        deleted = sqs.delete_message_batch(
            QueueUrl=pair.dlq_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]}
                for index, m in enumerate(done)
            ],
        )
        result.moved += len(deleted.get("Successful", []))
    if len(done) < len(mine):
        _release(pair.dlq_url, [m for m in mine if m["MessageId"] not in sent])
        raise CommandError(
            f"{len(mine) - len(done)} message(s) could not be sent to the {pair.name} "
            f"queue; {result.moved} moved, the rest stay in the DLQ"
        )


def _origin(message: dict[str, Any]) -> set[str]:
    """The ids a DLQ message may carry from its source: its own, and the worker's
    pixflare-source-message-id when the worker runtime rejected it there."""
    ids = {message["MessageId"]}
    source = message.get("MessageAttributes", {}).get("pixflare-source-message-id", {})
    if source.get("StringValue"):
        ids.add(str(source["StringValue"]))
    return ids


def _release(url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again at once (best effort)."""
    for message in messages:
        try:
            _sqs().change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        except ClientError:
            continue


def run_redrive(args: argparse.Namespace, ctx: CommandContext) -> int:
    pair = queue_pair(ctx.settings, args.queue)
    if pair is None:
        raise CommandError(f"the {args.queue} queue has no dead-letter queue in this stack")
    handle = _start_move_task(pair)
    if handle is not None:
        result = {"queue": args.queue, "method": "StartMessageMoveTask", "taskHandle": handle}
        ctx.emit(result, f"{args.queue}: message move task started ({handle})")
        return 0
    moved = move_messages(pair)
    result = {
        "queue": args.queue,
        "method": "receive-send-delete",
        "moved": moved.moved,
        "bouncedBack": moved.bounced,
    }
    human = f"{args.queue}: {moved.moved} message(s) moved back from the DLQ"
    if moved.bounced:
        human += (
            f"; {moved.bounced} failed again at once and were left in the DLQ "
            "(redrive them after the fix)"
        )
    ctx.emit(result, human)
    return 0
