"""`pixflare dlq redrive` on an endpoint that has StartMessageMoveTask, as AWS does.

moto lacks the operation, so a real HTTP server on loopback speaks SQS's JSON
protocol for the four calls a redrive makes, records what it is sent, and
answers as SQS would; botocore does the rest for real (signing, serialising,
parsing, error codes).
"""

from __future__ import annotations

import argparse
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdas.shared.config import settings_from_env
from pixflare.commands import dlq
from pixflare.context import CommandContext

ACCOUNT = "123456789012"
SOURCE = "PixflareJobs-variant"
DEAD = "PixflareJobs-variant-dlq"


def arn(name: str) -> str:
    return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


class FakeSqs:
    """Answers GetQueueAttributes, GetQueueUrl, StartMessageMoveTask and whatever
    ``move_task_error`` says (``(status, type)``) for the move task."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.move_task_error: tuple[int, str] | None = None
        self.url = ""

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
        return 400, {"__type": "com.amazonaws.sqs#InvalidAction", "message": operation}


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def redrive(fake: FakeSqs) -> tuple[int, str]:
    settings = settings_from_env({"VARIANT_QUEUE_URL": f"{fake.url}/{ACCOUNT}/{SOURCE}"})
    out = io.StringIO()
    ctx = CommandContext(settings=settings, json_output=True, stdout=out)
    code = dlq.run_redrive(argparse.Namespace(queue="variant"), ctx)
    return code, out.getvalue()


def test_redrive_starts_a_move_task_from_the_dlq_to_its_source_queue(fake_sqs: FakeSqs) -> None:
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
    }
    # and no message was touched by hand
    assert not {"ReceiveMessage", "SendMessageBatch", "DeleteMessageBatch"} & {
        operation for operation, _ in fake_sqs.calls
    }


def test_a_refused_move_task_is_an_error_not_a_silent_fallback(fake_sqs: FakeSqs) -> None:
    # Given credentials that may not start move tasks
    fake_sqs.move_task_error = (400, "AccessDenied")

    # Then the redrive fails with AWS's reason, asked once, and moves nothing by hand
    with pytest.raises(ClientError) as refused:
        redrive(fake_sqs)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    operations = [operation for operation, _ in fake_sqs.calls]
    assert operations.count("StartMessageMoveTask") == 1
    assert "ReceiveMessage" not in operations


def test_an_endpoint_without_move_tasks_falls_back_to_moving_by_hand(fake_sqs: FakeSqs) -> None:
    # Given an endpoint that does not implement the operation
    fake_sqs.move_task_error = (400, "UnsupportedOperation")

    # When redriven, the fallback takes over: it receives from the DLQ (which this
    # fake answers as an unknown call, so the command fails there; the fallback
    # itself is tested against moto in test_dlq_redrive.py)
    with pytest.raises(ClientError) as unknown:
        redrive(fake_sqs)
    assert unknown.value.response["Error"]["Code"] == "InvalidAction"
    operations = [operation for operation, _ in fake_sqs.calls]
    assert operations.count("StartMessageMoveTask") == 1
    assert operations[-1] == "ReceiveMessage"
