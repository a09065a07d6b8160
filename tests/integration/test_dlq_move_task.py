"""`pixflare dlq redrive` on an endpoint that has StartMessageMoveTask, as AWS does.

moto lacks the operation, so a real HTTP server on loopback speaks SQS's JSON
protocol for the calls a redrive makes, records what it is sent, and answers as
SQS would over a DLQ held in memory; botocore does the rest for real (signing,
serialising, parsing, error codes).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdas.shared.config import settings_from_env
from pixflare.commands import dlq
from pixflare.context import CommandContext

# serve_forever's poll: shutdown() waits up to one (the default 0.5 s, each server, each test).
POLL_SECONDS = 0.05

ACCOUNT = "123456789012"
SOURCE = "PixflareJobs-variant"
DEAD = "PixflareJobs-variant-dlq"


def arn(name: str) -> str:
    return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


class FakeSqs:
    """Answers GetQueueAttributes, GetQueueUrl, StartMessageMoveTask (or what
    ``move_task_error`` says, ``(status, type)``), and the message calls of the
    survey and of moving by hand over ``dead`` (the DLQ) and ``moved`` (what was
    sent to the source queue)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.move_task_error: tuple[int, str] | None = None
        self.url = ""
        self.dead: dict[str, dict[str, Any]] = {}  # receipt handle -> message
        self.hidden: set[str] = set()  # receipt handles received and not released
        self.moved: list[dict[str, Any]] = []

    def put(self, body: str, attributes: dict[str, str] | None = None) -> str:
        message_id = str(uuid.uuid4())
        self.dead[f"rh-{message_id}"] = {
            "MessageId": message_id,
            "ReceiptHandle": f"rh-{message_id}",
            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "Body": body,
            "Attributes": {"ApproximateReceiveCount": "1"},
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value}
                for name, value in (attributes or {}).items()
            },
        }
        return message_id

    def answer(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append((operation, body))
        if operation == "GetQueueAttributes":
            policy = {"deadLetterTargetArn": arn(DEAD), "maxReceiveCount": 3}
            return 200, {
                "Attributes": {"QueueArn": arn(SOURCE), "RedrivePolicy": json.dumps(policy)}
            }
        if operation == "GetQueueUrl":
            return 200, {"QueueUrl": f"{self.url}/{ACCOUNT}/{body['QueueName']}"}
        if operation == "StartMessageMoveTask":
            if self.move_task_error is not None:
                status, kind = self.move_task_error
                return status, {"__type": f"com.amazonaws.sqs#{kind}", "message": kind}
            return 200, {"TaskHandle": "eyJ0YXNrSWQiOiJ0LTEifQ=="}
        if operation == "ReceiveMessage":
            visible = [m for handle, m in self.dead.items() if handle not in self.hidden]
            got = visible[: body.get("MaxNumberOfMessages", 1)]
            if body.get("VisibilityTimeout", 30):
                self.hidden.update(m["ReceiptHandle"] for m in got)
            return 200, {"Messages": got} if got else {}
        if operation == "ChangeMessageVisibilityBatch":
            for entry in body["Entries"]:
                if entry["VisibilityTimeout"] == 0:
                    self.hidden.discard(entry["ReceiptHandle"])
            return 200, {"Successful": [{"Id": e["Id"]} for e in body["Entries"]]}
        if operation == "SendMessageBatch":
            self.moved.extend(body["Entries"])
            return 200, {
                "Successful": [
                    {"Id": e["Id"], "MessageId": str(uuid.uuid4()), "MD5OfMessageBody": "-"}
                    for e in body["Entries"]
                ]
            }
        if operation == "DeleteMessageBatch":
            for entry in body["Entries"]:
                self.dead.pop(entry["ReceiptHandle"], None)
                self.hidden.discard(entry["ReceiptHandle"])
            return 200, {"Successful": [{"Id": e["Id"]} for e in body["Entries"]]}
        return 400, {"__type": "com.amazonaws.sqs#InvalidAction", "message": operation}

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]


@pytest.fixture
def fake_sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSqs]:
    fake = FakeSqs()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            status, payload = fake.answer(operation, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
    )
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def redrive(fake: FakeSqs, *, include_invalid: bool = False) -> tuple[int, str]:
    settings = settings_from_env({"VARIANT_QUEUE_URL": f"{fake.url}/{ACCOUNT}/{SOURCE}"})
    out = io.StringIO()
    ctx = CommandContext(settings=settings, json_output=True, stdout=out)
    args = argparse.Namespace(queue="variant", include_invalid=include_invalid)
    code = dlq.run_redrive(args, ctx)
    return code, out.getvalue()


INVALID = {"pixflare-reason": "not valid JSON", "pixflare-error-kind": "invalid"}


def test_redrive_starts_a_move_task_from_the_dlq_to_its_source_queue(fake_sqs: FakeSqs) -> None:
    # Given a DLQ holding jobs that may succeed: one SQS moved after its receives,
    # one the worker moved for a missing setting
    fake_sqs.put('{"v": 1, "job": "a"}')
    fake_sqs.put(
        '{"v": 1, "job": "b"}', {"pixflare-reason": "X is not set", "pixflare-error-kind": "config"}
    )

    # When the variant DLQ is redriven on an endpoint with message move tasks
    code, out = redrive(fake_sqs)

    # Then one task is started, from the DLQ found in the redrive policy to the queue
    assert code == 0
    moves = [body for operation, body in fake_sqs.calls if operation == "StartMessageMoveTask"]
    assert moves == [{"SourceArn": arn(DEAD), "DestinationArn": arn(SOURCE)}]
    # and the operator gets the task handle (to follow it in the console)
    assert json.loads(out) == {
        "queue": "variant",
        "method": "StartMessageMoveTask",
        "taskHandle": "eyJ0YXNrSWQiOiJ0LTEifQ==",
        "skipped": 0,
    }
    # and the survey before it only looked: both messages visible again for the task
    assert fake_sqs.hidden == set() and len(fake_sqs.dead) == 2
    assert not {"SendMessageBatch", "DeleteMessageBatch"} & set(fake_sqs.operations())


def test_a_dlq_holding_an_invalid_message_is_moved_by_hand_around_it(fake_sqs: FakeSqs) -> None:
    # Given a DLQ with a message that can never succeed, and one that may
    invalid = fake_sqs.put("{not json", INVALID)
    fake_sqs.put('{"v": 1, "job": "a"}')

    # When it is redriven
    code, out = redrive(fake_sqs)

    # Then no move task (it would move both); the job is moved by hand, the invalid
    # message left in the DLQ, visible, and reported
    assert code == 0
    assert "StartMessageMoveTask" not in fake_sqs.operations()
    document = json.loads(out)
    assert document["method"] == "receive-send-delete"
    assert (document["moved"], document["skipped"], document["skippedIds"]) == (1, 1, [invalid])
    assert [entry["MessageBody"] for entry in fake_sqs.moved] == ['{"v": 1, "job": "a"}']
    assert [m["MessageId"] for m in fake_sqs.dead.values()] == [invalid]
    assert fake_sqs.hidden == set()


def test_include_invalid_starts_the_move_task_without_looking(fake_sqs: FakeSqs) -> None:
    fake_sqs.put("{not json", INVALID)
    code, out = redrive(fake_sqs, include_invalid=True)
    assert code == 0
    assert json.loads(out)["method"] == "StartMessageMoveTask"
    assert "ReceiveMessage" not in fake_sqs.operations()


def test_a_refused_move_task_is_an_error_not_a_silent_fallback(fake_sqs: FakeSqs) -> None:
    # Given credentials that may not start move tasks
    fake_sqs.move_task_error = (400, "AccessDenied")
    fake_sqs.put('{"v": 1, "job": "a"}')

    # Then the redrive fails with AWS's reason, asked once, and moves nothing by hand
    with pytest.raises(ClientError) as refused:
        redrive(fake_sqs)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    operations = fake_sqs.operations()
    assert operations.count("StartMessageMoveTask") == 1
    assert operations[-1] == "StartMessageMoveTask" and "SendMessageBatch" not in operations
    assert len(fake_sqs.dead) == 1 and fake_sqs.hidden == set()


def test_an_endpoint_without_move_tasks_falls_back_to_moving_by_hand(fake_sqs: FakeSqs) -> None:
    # Given an endpoint that does not implement the operation
    fake_sqs.move_task_error = (400, "UnsupportedOperation")
    fake_sqs.put('{"v": 1, "job": "a"}')

    # When redriven, the fallback takes over after the one refused attempt
    code, out = redrive(fake_sqs)
    assert code == 0
    assert fake_sqs.operations().count("StartMessageMoveTask") == 1
    document = json.loads(out)
    assert (document["method"], document["moved"], document["skipped"]) == (
        "receive-send-delete",
        1,
        0,
    )
    assert fake_sqs.dead == {}
