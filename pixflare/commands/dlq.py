"""`pixflare dlq list | redrive | purge`: the dead-letter queues.

Each DLQ is found from its source queue's RedrivePolicy, so the commands need
nothing beyond the queue URLs the stack outputs.

What a message is (docs/operations.md, the contract of lambdas/shared/worker.py):
a message the worker runtime moved itself carries ``pixflare-reason`` and
``pixflare-error-kind``: ``invalid`` (it can never succeed) or ``config`` (it
succeeds once the setting is fixed). A reason without a kind predates the kind
and came from the invalid-message path: invalid. A message with neither reached
the DLQ through SQS's redrive policy after maxReceiveCount failed receives.

Looking (``dlq list``). SQS has no peek: a look is a receive, which adds one to
the message's ApproximateReceiveCount and hides it for the receive's visibility
timeout. So the look receives with a short visibility (a few rounds then find
different messages) and at once makes everything it received visible again: a
``dlq list`` followed straight away by ``redrive`` or ``purge`` misses nothing
(were that reset lost, the messages reappear after PEEK_VISIBILITY_SECONDS). The
receive count shown is SQS's count without this look's own receive; earlier
looks (each ``dlq list``, a redrive that left the message) are in it and cannot
be told apart. The output says so (``receiveCountIncludesEarlierLooks``).

Redrive. By default it leaves messages that can never succeed in the DLQ (moving
them only brings them straight back) and says how many and how to delete them;
``--include-invalid`` moves them too. SQS's StartMessageMoveTask moves a whole
DLQ and cannot leave any message behind, so the redrive first surveys the DLQ
(receive, then release as a look does) and starts a move task only when nothing
there is to be left, or with ``--include-invalid``. Otherwise, and on endpoints
without move tasks (moto), it moves messages itself: receive, send to the source
queue, and only then delete from the DLQ, with the message id as a guard so no
message is sent twice in one run. An invalid message that lands in the DLQ
between the survey and the move task is moved with the rest; the worker rejects
it back into the DLQ at once, so nothing is lost.

Purge. ``dlq purge QUEUE`` deletes what it receives from the DLQ, in bounded
rounds, and lists the ids; ``--message-id`` deletes that one message only. Not
SQS's PurgeQueue: that cannot say what it deleted, allows one call a minute, and
also removes messages someone else is handling at the time.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from botocore.exceptions import ClientError

from lambdas.shared import aws
from lambdas.shared.config import Settings
from lambdas.shared.errors import PixflareError, aws_errors
from pixflare.context import CommandContext, CommandError

QUEUES = {
    "variant": "variant_queue_url",
    "backup": "backup_queue_url",
    "domain": "domain_queue_url",
    "cron": "cron_queue_url",
    "ingest": "ingest_queue_url",
}
QUEUE_NAMES = "variant, backup, domain, cron or ingest"
PEEK_LIMIT = 10
PEEK_VISIBILITY_SECONDS = 20  # how long a look hides a message should its reset be lost
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

# The message attributes of the dead-letter contract (lambdas/shared/worker.py).
REASON_ATTRIBUTE = "pixflare-reason"
KIND_ATTRIBUTE = "pixflare-error-kind"
SOURCE_ID_ATTRIBUTE = "pixflare-source-message-id"
KIND_INVALID = "invalid"
KIND_CONFIG = "config"
KIND_EXHAUSTED = "maxReceiveCount"  # neither attribute: SQS's redrive policy moved it
EXHAUSTED_REASON = "failed after maxReceiveCount receives"


def register(subparsers: Any) -> None:
    dlq = subparsers.add_parser("dlq", help="dead-letter queues: look, redrive, purge")
    commands = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    list_help = (
        "each queue's DLQ: depth, in flight, and a look at up to 10 messages (receive "
        "count, reason, whether redrive takes it); SQS counts a look as a receive"
    )
    listing = commands.add_parser("list", help=list_help, description=list_help + ".")
    listing.set_defaults(func=run_list)
    redrive_help = (
        "move a DLQ's messages back to its source queue, leaving those that can "
        "never succeed (invalid) unless --include-invalid"
    )
    redrive = commands.add_parser("redrive", help=redrive_help, description=redrive_help + ".")
    redrive.add_argument("queue", choices=tuple(QUEUES), metavar="QUEUE", help=QUEUE_NAMES)
    redrive.add_argument(
        "--include-invalid",
        action="store_true",
        help="move invalid messages too (they come straight back to the DLQ)",
    )
    redrive.set_defaults(func=run_redrive)
    purge_help = (
        "delete a DLQ's messages for good (all, or one with --message-id); on a "
        "terminal you confirm by typing the queue name, elsewhere pass --yes"
    )
    purge = commands.add_parser("purge", help=purge_help, description=purge_help + ".")
    purge.add_argument("queue", choices=tuple(QUEUES), metavar="QUEUE", help=QUEUE_NAMES)
    purge.add_argument(
        "--message-id", metavar="ID", help="delete only this message (its id in `dlq list`)"
    )
    purge.add_argument(
        "--yes", action="store_true", help="do not ask; required when stdin is not a terminal"
    )
    purge.set_defaults(func=run_purge)


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


def _counts(url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue, as SQS estimates them."""
    attributes = _attributes(
        url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
    )
    return (
        int(attributes.get("ApproximateNumberOfMessages", "0")),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
    )


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


def _required_pair(settings: Settings, name: str) -> QueuePair:
    pair = queue_pair(settings, name)
    if pair is None:
        raise CommandError(f"the {name} queue has no dead-letter queue in this stack")
    return pair


# -- what a message is -------------------------------------------------------------------
def _string_attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name, {}).get("StringValue")
    return str(value) if value else None


def error_kind(message: dict[str, Any]) -> str:
    """``invalid``, ``config`` (or a kind this version does not know), or
    ``maxReceiveCount`` for a message SQS moved after its failed receives."""
    kind = _string_attribute(message, KIND_ATTRIBUTE)
    if kind:
        return kind
    if _string_attribute(message, REASON_ATTRIBUTE):
        return KIND_INVALID  # a reason without a kind predates the kind: invalid only
    return KIND_EXHAUSTED


def never_succeeds(message: dict[str, Any]) -> bool:
    return error_kind(message) == KIND_INVALID


def describe(message: dict[str, Any], own_receives: int = 1) -> dict[str, Any]:
    """A received DLQ message as `dlq list` shows it; ``own_receives``: how many of its
    receives were this look's."""
    body = str(message.get("Body", ""))
    count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "0"))
    return {
        "messageId": message["MessageId"],
        "kind": error_kind(message),
        "reason": _string_attribute(message, REASON_ATTRIBUTE),
        "redrivable": not never_succeeds(message),
        "receiveCount": max(0, count - own_receives),
        "body": body if len(body) <= BODY_PREVIEW else body[:BODY_PREVIEW] + "...",
    }


# -- receiving, and giving back ----------------------------------------------------------
def _receive(url: str, count: int, visibility: int, wait: int = 1) -> list[dict[str, Any]]:
    # WaitTimeSeconds > 0 asks every SQS server, so a small queue is not reported empty.
    messages = (
        _sqs()
        .receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, count)),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )
    return list(messages)


def release(url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again at once (best effort: a message whose
    reset fails comes back when its visibility timeout ends)."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        try:
            with aws_errors("make DLQ messages visible again"):
                _sqs().change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(chunk)
                    ],
                )
        except PixflareError:
            continue


def peek(url: str, limit: int = PEEK_LIMIT, visible: int | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` messages, each received once and made visible again at once.

    ``visible``: how many the queue holds, when known, so a look stops there
    instead of waiting on one more empty receive.
    """
    wanted = limit if visible is None else min(limit, visible)
    received: dict[str, dict[str, Any]] = {}
    receives: dict[str, int] = {}
    held: list[dict[str, Any]] = []
    try:
        for _ in range(wanted // 10 + 3):  # bounded: a few receives find what one may miss
            if len(received) >= wanted:
                break
            got = _receive(url, wanted - len(received), PEEK_VISIBILITY_SECONDS)
            if not got:
                break
            held.extend(got)
            for message in got:
                receives[message["MessageId"]] = receives.get(message["MessageId"], 0) + 1
                received[message["MessageId"]] = message  # the latest count wins
    finally:
        release(url, held)
    return [describe(m, receives[i]) for i, m in list(received.items())[:limit]]


# -- dlq list ----------------------------------------------------------------------------
def run_list(args: argparse.Namespace, ctx: CommandContext) -> int:
    report: list[dict[str, Any]] = []
    for name in QUEUES:
        pair = queue_pair(ctx.settings, name)
        if pair is None:
            continue
        # Counted before the look, which would otherwise show its own receives in flight.
        depth, in_flight = _counts(pair.dlq_url)
        report.append(
            {
                "queue": name,
                "dlqUrl": pair.dlq_url,
                "depth": depth,
                "inFlight": in_flight,
                "messages": peek(pair.dlq_url, PEEK_LIMIT, depth) if depth else [],
                "receiveCountIncludesEarlierLooks": True,
            }
        )
    ctx.emit(report, lambda: list_text(report))
    return 0


def _printable(text: str) -> str:
    """One plain line: control characters (a malformed body may hold any) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def list_text(report: list[dict[str, Any]]) -> str:
    if not report:
        return "no queues (the stack was deployed with enableQueues=false)"
    lines = []
    for entry in report:
        lines.append(
            f"{entry['queue']}: {entry['depth']} message(s), {entry['inFlight']} in flight"
            f"  (DLQ {entry['dlqUrl']})"
        )
        for message in entry["messages"]:
            if message["redrivable"]:
                verdict = "redrive moves it"
                if message["kind"] == KIND_CONFIG:
                    verdict += " (after the setting is fixed)"
            else:
                verdict = (
                    "redrive skips it: it can never succeed (to delete it: pixflare dlq "
                    f"purge {entry['queue']} --message-id {message['messageId']})"
                )
            lines.append(f"  {message['messageId']}  receives: {message['receiveCount']}")
            lines.append(f"      reason: {_printable(message['reason'] or EXHAUSTED_REASON)}")
            lines.append(f"      {verdict}")
            lines.append(f"      body: {_printable(message['body'])}")
        if len(entry["messages"]) < entry["depth"]:
            lines.append(f"  (showing {len(entry['messages'])} of {entry['depth']})")
    if any(entry["messages"] for entry in report):
        lines.append(
            "receives: SQS counts every receive, and a look is one: the counts leave out "
            "this look but include earlier ones (dlq list, a redrive that left the message)"
        )
    return "\n".join(lines)


# -- dlq redrive -------------------------------------------------------------------------
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


def holds_messages_to_skip(url: str) -> bool:
    """Whether the DLQ holds a message that can never succeed; True also when the
    DLQ is too large to read through (moving by hand, which skips, is then safe)."""
    held: list[dict[str, Any]] = []
    try:
        for _ in range(MAX_REDRIVE_ROUNDS):
            got = _receive(url, REDRIVE_BATCH, REDRIVE_VISIBILITY_SECONDS)
            if not got:
                return False
            held.extend(got)
            if any(never_succeeds(m) for m in got):
                return True
        return True
    finally:
        release(url, held)


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
    skipped: list[str] = field(default_factory=list)  # ids left: they can never succeed


def move_messages(pair: QueuePair, *, skip_invalid: bool = True) -> MoveResult:
    """Receive from the DLQ, send to the source queue, then delete; never lose or duplicate.

    Guards, all within one run: a message already sent is never sent again (its
    delete is retried instead); a message this run put on the source queue that
    failed straight back into the DLQ is left there, so an unfixed poison
    message cannot ping-pong; with ``skip_invalid`` a message that can never
    succeed is left there too. Those left are held (kept invisible) until the
    run ends rather than released at once: SQS returns messages in no particular
    order, and a receive that found only held messages must not be mistaken for
    an empty DLQ while other messages wait behind them. The run ends on the
    first receive that finds nothing.
    """
    sent: set[str] = set()  # DLQ message ids already copied to the source queue
    created: set[str] = set()  # ids of the copies this run sent
    bounced: dict[str, dict[str, Any]] = {}  # by message id
    skipped: dict[str, dict[str, Any]] = {}  # by message id
    result = MoveResult()
    try:
        for _ in range(MAX_REDRIVE_ROUNDS):
            messages = _receive(pair.dlq_url, REDRIVE_BATCH, REDRIVE_VISIBILITY_SECONDS)
            if not messages:
                break
            mine = []
            # A held message whose visibility ran out comes round again: hold it again,
            # under its newest receipt handle.
            for message in messages:
                if _origin(message) & created:
                    bounced[message["MessageId"]] = message
                elif skip_invalid and never_succeeds(message):
                    skipped[message["MessageId"]] = message
                else:
                    mine.append(message)
            if mine:
                _move_batch(pair, mine, sent, created, result)
    finally:
        result.bounced = len(bounced)
        result.skipped = list(skipped)
        release(pair.dlq_url, [*bounced.values(), *skipped.values()])
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
        release(pair.dlq_url, [m for m in mine if m["MessageId"] not in sent])
        raise CommandError(
            f"{len(mine) - len(done)} message(s) could not be sent to the {pair.name} "
            f"queue; {result.moved} moved, the rest stay in the DLQ"
        )


def _origin(message: dict[str, Any]) -> set[str]:
    """The ids a DLQ message may carry from its source: its own, and the worker's
    pixflare-source-message-id when the worker runtime rejected it there."""
    ids = {message["MessageId"]}
    source = _string_attribute(message, SOURCE_ID_ATTRIBUTE)
    if source:
        ids.add(source)
    return ids


def run_redrive(args: argparse.Namespace, ctx: CommandContext) -> int:
    pair = _required_pair(ctx.settings, args.queue)
    include_invalid = bool(args.include_invalid)
    if include_invalid or not holds_messages_to_skip(pair.dlq_url):
        handle = _start_move_task(pair)
        if handle is not None:
            result = {
                "queue": args.queue,
                "method": "StartMessageMoveTask",
                "taskHandle": handle,
                "skipped": 0,
            }
            ctx.emit(result, f"{args.queue}: message move task started ({handle})")
            return 0
    moved = move_messages(pair, skip_invalid=not include_invalid)
    document = {
        "queue": args.queue,
        "method": "receive-send-delete",
        "moved": moved.moved,
        "bouncedBack": moved.bounced,
        "skipped": len(moved.skipped),
        "skippedIds": moved.skipped,
    }
    ctx.emit(document, lambda: redrive_text(args.queue, moved))
    return 0


def redrive_text(queue: str, moved: MoveResult) -> str:
    lines = [f"{queue}: {moved.moved} message(s) moved back from the DLQ"]
    if moved.bounced:
        lines[0] += (
            f"; {moved.bounced} failed again at once and were left in the DLQ "
            "(redrive them after the fix)"
        )
    if moved.skipped:
        lines.append(
            f"{len(moved.skipped)} skipped: invalid message(s) can never succeed (see "
            f"`pixflare dlq list`); delete with `pixflare dlq purge {queue}`, "
            "or move anyway with --include-invalid"
        )
    return "\n".join(lines)


# -- dlq purge ---------------------------------------------------------------------------
@dataclass
class PurgeResult:
    deleted: list[dict[str, Any]] = field(default_factory=list)  # described messages
    looked_at: int = 0  # distinct messages received


def delete_messages(url: str, message_id: str | None = None) -> PurgeResult:
    """Delete every message received from ``url`` in bounded rounds, or only the one
    with ``message_id`` (the others are held while looking, then made visible)."""
    sqs = _sqs()
    result = PurgeResult()
    seen: set[str] = set()
    held: dict[str, dict[str, Any]] = {}
    try:
        for _ in range(MAX_REDRIVE_ROUNDS):
            got = _receive(url, REDRIVE_BATCH, REDRIVE_VISIBILITY_SECONDS)
            if not got:
                break
            seen.update(m["MessageId"] for m in got)
            if message_id is None:
                doomed = got
            else:
                doomed = [m for m in got if m["MessageId"] == message_id]
                held.update({m["MessageId"]: m for m in got if m["MessageId"] != message_id})
            if doomed:
                response = sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(doomed)
                    ],
                )
                done = {int(entry["Id"]) for entry in response.get("Successful", [])}
                result.deleted.extend(describe(doomed[i]) for i in sorted(done))
                if message_id is not None and done:
                    break
    finally:
        release(url, list(held.values()))
    result.looked_at = len(seen)
    return result


def require_terminal(stdin: TextIO) -> None:
    if not stdin.isatty():
        raise CommandError(
            "dlq purge deletes messages for good and there is no terminal to ask on: "
            "pass --yes to confirm",
            exit_code=2,
        )


def confirm(stdin: TextIO, stderr: TextIO, question: str, expected: str) -> None:
    """Ask on the terminal for ``expected`` to be typed; a CommandError otherwise."""
    stderr.write(f"{question} Type {expected} to confirm: ")
    stderr.flush()
    if stdin.readline().strip() != expected:
        raise CommandError("not confirmed; nothing deleted")


def run_purge(args: argparse.Namespace, ctx: CommandContext) -> int:
    message_id: str | None = args.message_id
    if message_id is not None and not message_id.strip():
        raise CommandError("--message-id needs an id, as `pixflare dlq list` shows it", 2)
    if not args.yes:
        require_terminal(sys.stdin)  # refused before anything is looked up
    pair = _required_pair(ctx.settings, args.queue)
    if not args.yes:
        if message_id is not None:
            question = f"Delete message {message_id} from the {args.queue} DLQ for good?"
        else:
            depth, in_flight = _counts(pair.dlq_url)
            question = (
                f"Delete all {depth} message(s) of the {args.queue} DLQ for good"
                f"{f' ({in_flight} in flight stay)' if in_flight else ''}?"
            )
        confirm(sys.stdin, ctx.stderr, question, args.queue)
    result = delete_messages(pair.dlq_url, message_id)
    _, in_flight = _counts(pair.dlq_url)
    if message_id is not None and not result.deleted:
        unseen = ""
        if in_flight:
            unseen = f"; {in_flight} in flight could not be seen, try again in a minute"
        raise CommandError(
            f"no message {message_id} in the {args.queue} DLQ "
            f"({result.looked_at} looked at{unseen}); nothing deleted"
        )
    document = {
        "queue": args.queue,
        "dlqUrl": pair.dlq_url,
        "deleted": len(result.deleted),
        "messages": [
            {key: message[key] for key in ("messageId", "kind", "reason")}
            for message in result.deleted
        ],
        "inFlightLeft": 0 if message_id is not None else in_flight,
    }
    ctx.emit(document, lambda: purge_text(args.queue, document))
    return 0


def purge_text(queue: str, document: dict[str, Any]) -> str:
    lines = [f"{queue}: deleted {document['deleted']} message(s) from the DLQ"]
    for message in document["messages"]:
        reason = _printable(message["reason"] or EXHAUSTED_REASON)
        lines.append(f"  {message['messageId']}  {reason}")
    if document["inFlightLeft"]:
        lines.append(
            f"{document['inFlightLeft']} in flight were not deleted (being received: a "
            "redrive or a look); run purge again once they are visible"
        )
    return "\n".join(lines)
