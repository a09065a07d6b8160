"""`pixflare dlq list | redrive | purge` as a newcomer meets them (issue #18, point 6):
the installed console script against one local stack, whose variant worker rejects
malformed messages into its DLQ."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pixflare.local.stack import LocalStack
from tests.support.aws_resources import queue_counts
from tests.support.console import COMMAND_TIMEOUT_SECONDS, PIXFLARE, on_stack
from tests.support.local_stack import started_stack, wait_until

MALFORMED = ['{"v": 1, "imageId": 7}', "not json\nat all"]
# A job for an image that does not exist: once redriven it fails for good and is
# acknowledged, so it stands for a transient failure that has since cleared.
EXHAUSTED_JOB = json.dumps({"v": 1, "imageId": "0" * 32, "owner": "nobody"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory, "newcomer-dlq") as running:
        yield running


def on_terminal(stack: LocalStack, *args: str, answer: str) -> subprocess.CompletedProcess[str]:
    """``pixflare --endpoint <the stack> ARGS`` with a terminal as stdin, typing ``answer``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = [str(PIXFLARE), "--endpoint", stack.endpoint, *args]
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            command,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        ) as process:
            os.write(controller, f"{answer}\n".encode())
            out, err = process.communicate(timeout=COMMAND_TIMEOUT_SECONDS)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def variant_entry(listing: str) -> dict[str, Any]:
    return next(entry for entry in json.loads(listing) if entry["queue"] == "variant")


def test_list_redrive_and_purge_of_a_dlq_holding_invalid_messages(stack: LocalStack) -> None:
    sqs = stack.client("sqs")
    source_url = stack.outputs["VariantQueueUrl"]
    dlq_url = stack.outputs["VariantDlqUrl"]
    # Given two malformed messages on the variant queue, which its worker rejects into
    # the DLQ, and a job there that stands for one SQS moved after maxReceiveCount
    for body in MALFORMED:
        sqs.send_message(QueueUrl=source_url, MessageBody=body)
    wait_until(lambda: queue_counts(dlq_url, sqs) == (2, 0), "the worker rejecting both")
    job_id = sqs.send_message(QueueUrl=dlq_url, MessageBody=EXHAUSTED_JOB)["MessageId"]

    # When the newcomer looks: depth and in flight per queue, and per message its
    # receive count, its reason, and whether redrive takes it
    done = on_stack(stack, "dlq", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"variant: 3 message(s), 0 in flight  (DLQ {dlq_url})" in lines
    assert lines.count("      reason: failed after maxReceiveCount receives") == 1
    assert lines.count("      redrive moves it") == 1
    skips = "      redrive skips it: it can never succeed (to delete it: pixflare dlq purge variant"
    assert sum(line.startswith(skips) for line in lines) == 2
    assert f"  {job_id}  receives: 0" in lines
    assert "      body: not json\\nat all" in lines  # escaped: one plain line
    assert lines[-1].startswith("receives: SQS counts every receive, and a look is one")

    # And looks again at once, in JSON: nothing was hidden by the first look, and the
    # receive counts include it (SQS has no peek), which the document says
    done = on_stack(stack, "--json", "dlq", "list")
    assert done.returncode == 0, done.stderr
    variant = variant_entry(done.stdout)
    assert (variant["depth"], variant["inFlight"]) == (3, 0)
    assert variant["receiveCountIncludesEarlierLooks"] is True
    messages = {m["messageId"]: m for m in variant["messages"]}
    assert {m["receiveCount"] for m in messages.values()} == {1}
    assert (messages[job_id]["kind"], messages[job_id]["reason"]) == ("maxReceiveCount", None)
    invalid = sorted(i for i, m in messages.items() if not m["redrivable"])
    assert len(invalid) == 2 and job_id not in invalid
    assert {messages[i]["kind"] for i in invalid} == {"invalid"}
    assert all(messages[i]["reason"] for i in invalid)
    assert {f"  {i}  receives: 0" for i in messages} <= set(lines)
    assert {f"{skips} --message-id {i})" for i in invalid} <= set(lines)

    # When they redrive straight after the look: the job goes back, the invalid two stay
    done = on_stack(stack, "dlq", "redrive", "variant")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "variant: 1 message(s) moved back from the DLQ",
        "2 skipped: invalid message(s) can never succeed (see `pixflare dlq list`); delete "
        "with `pixflare dlq purge variant`, or move anyway with --include-invalid",
    ]
    wait_until(lambda: queue_counts(source_url, sqs) == (0, 0), "the redriven job to end")
    assert queue_counts(dlq_url, sqs) == (2, 0)

    # A purge without a terminal and without --yes is refused, with what to do
    done = on_stack(stack, "dlq", "purge", "variant")
    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert line.startswith("pixflare: dlq purge deletes messages") and "pass --yes" in line
    # An unknown message id is one line, and everything stays (visible, not held)
    unknown = str(uuid.uuid4())
    done = on_stack(stack, "dlq", "purge", "variant", "--message-id", unknown, "--yes")
    assert done.returncode == 1
    assert done.stderr == (
        f"pixflare: no message {unknown} in the variant DLQ (2 looked at); nothing deleted\n"
    )
    assert queue_counts(dlq_url, sqs) == (2, 0)

    # On a terminal the queue name must be typed; anything else deletes nothing
    first, second = invalid
    done = on_terminal(stack, "dlq", "purge", "variant", "--message-id", first, answer="y")
    assert done.returncode == 1
    assert done.stderr.endswith(
        f"Delete message {first} from the variant DLQ for good? Type variant to confirm: "
        "pixflare: not confirmed; nothing deleted\n"
    )
    assert queue_counts(dlq_url, sqs) == (2, 0)
    done = on_terminal(stack, "dlq", "purge", "variant", "--message-id", first, answer="variant")
    assert done.returncode == 0, done.stderr
    [headline, deleted] = done.stdout.splitlines()
    assert headline == "variant: deleted 1 message(s) from the DLQ"
    assert deleted.startswith(f"  {first}  ")
    assert queue_counts(dlq_url, sqs) == (1, 0)

    # --include-invalid moves the other one anyway; the worker rejects it straight back
    done = on_stack(stack, "--json", "dlq", "redrive", "variant", "--include-invalid")
    assert done.returncode == 0, done.stderr
    redriven = json.loads(done.stdout)
    assert (redriven["moved"], redriven["skipped"]) == (1, 0)
    wait_until(lambda: queue_counts(dlq_url, sqs) == (1, 0), "the invalid message back")

    # And a purge of the whole DLQ with --yes empties it and says what it deleted
    done = on_stack(stack, "--json", "dlq", "purge", "variant", "--yes")
    assert done.returncode == 0, done.stderr
    purged = json.loads(done.stdout)
    assert (purged["queue"], purged["deleted"], purged["inFlightLeft"]) == ("variant", 1, 0)
    [message] = purged["messages"]
    assert message["kind"] == "invalid" and message["messageId"] != second
    assert queue_counts(dlq_url, sqs) == (0, 0)
