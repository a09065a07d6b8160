"""Network calls end before the function does, against real sockets and queues."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lambdas.shared import aws as shared_aws
from lambdas.shared.deadline import Deadline
from lambdas.shared.errors import TransientError, aws_errors
from lambdas.shared.messages import VariantJob
from lambdas.shared.worker import JobContext, QueueWorker
from tests.support.aws_resources import Resources
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext, sqs_event, sqs_record


@pytest.fixture
def stalled_endpoint() -> Iterator[str]:
    """A server on loopback that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():  # bounded by the fixture's lifetime
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_a_stalled_endpoint_fails_the_call_before_the_deadline(
    stalled_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", stalled_endpoint)
    seconds_left = 6.0
    # Given an invocation with 6 s left and an endpoint that never answers
    started = time.monotonic()
    # When a call is made, it fails as a transient error (retried later) ...
    with (
        Deadline.in_seconds(seconds_left).bound(),
        pytest.raises(TransientError, match=r"(?i)read timeout"),
        aws_errors("get queue attributes"),
    ):
        shared_aws.sqs().get_queue_attributes(QueueUrl=f"{stalled_endpoint}/123456789012/q")
    # ... and before the function would have been cut off (with the default timeouts
    # the same call could take 20 s)
    assert time.monotonic() - started < seconds_left


def test_a_record_with_no_time_left_for_its_calls_is_handed_back_unstarted(
    aws: Resources, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_env(monkeypatch, aws.env("variant"))
    sent: list[str] = []
    for client in shared_aws.client("s3").every_client():
        client.meta.events.register("before-send.s3", lambda **_: sent.append("s3"))

    def process(job: VariantJob, ctx: JobContext) -> None:
        shared_aws.s3().head_object(Bucket=aws.bucket, Key=f"{job.owner}/x")

    worker = QueueWorker(name="deadline", model=VariantJob, process=process, idempotent=False)
    record = sqs_record(VariantJob(imageId="a" * 32, owner="alice").to_body())

    # Given an invocation with 3.5 s left: too little for a call's shortest timeouts
    # and the report after them (3 s + 1 s), so too little to start a record
    response = worker.handle(sqs_event([record]), FakeLambdaContext(remaining_ms=3_500))

    # Then the record is handed back for a retry, and no request was sent
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert sent == []
    retry = next(r for r in caplog.records if r.getMessage() == "job failed, will retry")
    assert "OutOfTimeError" in retry.__dict__["reason"]
