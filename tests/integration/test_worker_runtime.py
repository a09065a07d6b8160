"""The queue-worker runtime under moto: real queues, DLQs, redrive and idempotency records."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from lambdas.shared import aws, worker
from lambdas.shared.errors import ConfigError, NotFoundError, TransientError
from lambdas.shared.messages import VariantJob
from lambdas.shared.worker import JobContext, QueueWorker
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext, event_from_received

GOOD_1, GOOD_2, TRANSIENT, PERMANENT, MISCONFIGURED = (c * 32 for c in "12345")


class Recorder:
    """A job's logic whose behaviour is chosen per image id, and that remembers its calls."""

    def __init__(self) -> None:
        self.processed: list[str] = []
        self.permanent: list[tuple[str, str]] = []
        self.config_errors: list[tuple[str, str]] = []

    def process(self, job: VariantJob, ctx: JobContext) -> None:
        self.processed.append(job.image_id)
        if job.image_id == TRANSIENT:
            raise TransientError("S3 said SlowDown")
        if job.image_id == PERMANENT:
            raise NotFoundError("image record gone")
        if job.image_id == MISCONFIGURED:
            raise ConfigError("IMAGES_BUCKET is not set")

    def on_permanent(self, job: VariantJob, err: Exception, ctx: JobContext) -> None:
        self.permanent.append((job.image_id, str(err)))

    def on_config_error(self, job: VariantJob, err: ConfigError, ctx: JobContext) -> None:
        self.config_errors.append((job.image_id, str(err)))


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env("variant"))
    return aws


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def variant_worker(recorder: Recorder) -> QueueWorker[VariantJob]:
    return QueueWorker(
        name="test-variant",
        model=VariantJob,
        process=recorder.process,
        on_permanent_failure=recorder.on_permanent,
        on_config_error=recorder.on_config_error,
    )


@pytest.fixture
def visibility_changes() -> list[dict[str, Any]]:
    """Every ChangeMessageVisibility the runtime makes (the call still reaches moto)."""
    calls: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    aws.sqs().meta.events.register("provide-client-params.sqs.ChangeMessageVisibility", hook)
    return calls


def send(queue_url: str, body: str) -> str:
    sqs = boto3.client("sqs", region_name=REGION)
    return str(sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"])


def job_body(image_id: str) -> str:
    return VariantJob(imageId=image_id, owner="alice").to_body()


def test_mixed_batch_fails_only_the_transient_record(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
    visibility_changes: list[dict[str, Any]],
) -> None:
    # Given a batch with two good jobs, one transient, one permanent and one invalid message
    queue = env.queue_urls["variant"]
    ids = {
        "good1": send(queue, job_body(GOOD_1)),
        "transient": send(queue, job_body(TRANSIENT)),
        "invalid": send(queue, '{"v": 1, "imageId": "../../etc/passwd", "owner": "alice"}'),
        "permanent": send(queue, job_body(PERMANENT)),
        "good2": send(queue, job_body(GOOD_2)),
    }
    messages = receive_all(queue)
    assert len(messages) == 5

    # When the worker handles it
    response = variant_worker.handle(
        event_from_received(messages, env.queue_arns["variant"]), FakeLambdaContext()
    )

    # Then exactly the transient record is reported as failed
    assert response == {"batchItemFailures": [{"itemIdentifier": ids["transient"]}]}
    # and its visibility was set to the first backoff step
    assert [(c["VisibilityTimeout"]) for c in visibility_changes] == [30]
    transient_handle = next(
        m["ReceiptHandle"] for m in messages if m["MessageId"] == ids["transient"]
    )
    assert visibility_changes[0]["ReceiptHandle"] == transient_handle
    # and the invalid one is in the DLQ at once, with its reason
    dead = receive_all(env.dlq_urls["variant"])
    assert len(dead) == 1
    assert dead[0]["Body"] == '{"v": 1, "imageId": "../../etc/passwd", "owner": "alice"}'
    reason = dead[0]["MessageAttributes"]["pixflare-reason"]["StringValue"]
    assert "imageId" in reason
    assert dead[0]["MessageAttributes"]["pixflare-error-kind"]["StringValue"] == "invalid"
    assert (
        dead[0]["MessageAttributes"]["pixflare-source-message-id"]["StringValue"] == ids["invalid"]
    )
    # and the permanent failure was recorded, not retried
    assert recorder.permanent == [(PERMANENT, "image record gone")]
    assert sorted(recorder.processed) == sorted([GOOD_1, TRANSIENT, PERMANENT, GOOD_2])


def test_redelivered_job_is_done_once(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
) -> None:
    # Given the same job delivered twice (a duplicate send, or a redelivery after a lost ack)
    queue = env.queue_urls["variant"]
    send(queue, job_body(GOOD_1))
    send(queue, job_body(GOOD_1))
    messages = receive_all(queue)
    assert len(messages) == 2

    # When both are handled, in one batch and then again in another
    first = variant_worker.handle(
        event_from_received(messages[:1], env.queue_arns["variant"]), FakeLambdaContext()
    )
    second = variant_worker.handle(
        event_from_received(messages[1:], env.queue_arns["variant"]), FakeLambdaContext()
    )

    # Then the work ran once and both deliveries were acknowledged
    assert recorder.processed == [GOOD_1]
    assert first == second == {"batchItemFailures": []}


def test_transient_failure_is_retried_with_growing_backoff(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    visibility_changes: list[dict[str, Any]],
) -> None:
    from tests.support.events import sqs_event, sqs_record

    records = [
        sqs_record(job_body(TRANSIENT), receive_count=n, queue_arn=env.queue_arns["variant"])
        for n in (1, 2, 3, 4, 9)
    ]
    for record in records:
        variant_worker.handle(sqs_event([record]), FakeLambdaContext())
    assert [c["VisibilityTimeout"] for c in visibility_changes] == [30, 60, 120, 240, 900]


def test_failed_job_lands_in_dlq_after_three_receives(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Backoff of zero lets the test re-receive at once instead of waiting 30 s, 60 s, ...
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)
    queue = env.queue_urls["variant"]
    message_id = send(queue, job_body(TRANSIENT))

    receives = 0
    for _ in range(6):  # bounded; SQS moves it on the receive after the third
        messages = receive_all(queue)
        if not messages:
            break
        receives += 1
        response = variant_worker.handle(
            event_from_received(messages, env.queue_arns["variant"]), FakeLambdaContext()
        )
        assert response["batchItemFailures"] == [{"itemIdentifier": message_id}]

    assert receives == 3
    assert recorder.processed == [TRANSIENT] * 3
    dead = receive_all(env.dlq_urls["variant"])
    assert [m["MessageId"] for m in dead] == [message_id]


def test_every_record_failing_still_returns_a_partial_response(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
) -> None:
    from tests.support.events import sqs_event, sqs_record

    records = [
        sqs_record(job_body(TRANSIENT), queue_arn=env.queue_arns["variant"]) for _ in range(2)
    ]
    response = variant_worker.handle(sqs_event(records), FakeLambdaContext())
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {
        r["messageId"] for r in records
    }


def test_record_not_started_when_time_is_nearly_up(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
) -> None:
    from tests.support.events import sqs_event, sqs_record

    record = sqs_record(job_body(GOOD_1), queue_arn=env.queue_arns["variant"])
    response = variant_worker.handle(sqs_event([record]), FakeLambdaContext(remaining_ms=500))
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert recorder.processed == []


def test_unknown_exception_is_retried_not_lost(
    env: Resources,
    recorder: Recorder,
) -> None:
    from tests.support.events import sqs_event, sqs_record

    def explode(job: VariantJob, ctx: JobContext) -> None:
        raise RuntimeError("a bug")

    crashing = QueueWorker(name="test-crash", model=VariantJob, process=explode)
    record = sqs_record(job_body(GOOD_1), queue_arn=env.queue_arns["variant"])
    response = crashing.handle(sqs_event([record]), FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    # and the idempotency record was released, so the retry can run
    retry = sqs_record(job_body(GOOD_1), queue_arn=env.queue_arns["variant"], receive_count=2)
    worked = QueueWorker(name="test-crash", model=VariantJob, process=recorder.process)
    assert worked.handle(sqs_event([retry]), FakeLambdaContext()) == {"batchItemFailures": []}
    assert recorder.processed == [GOOD_1]


def test_invalid_message_stays_when_dlq_unset(
    aws: Resources,
    monkeypatch: pytest.MonkeyPatch,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
) -> None:
    env = aws.env("variant")
    env.pop("DLQ_URL")
    use_env(monkeypatch, env)
    from tests.support.events import sqs_event, sqs_record

    record = sqs_record("not json", queue_arn=aws.queue_arns["variant"])
    response = variant_worker.handle(sqs_event([record]), FakeLambdaContext())
    # Not acknowledged: SQS's own redrive will move it to the DLQ after maxReceiveCount.
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    # and nothing else happened to it: never run, never given up on, nowhere sent
    assert recorder.processed == []
    assert recorder.permanent == []
    assert receive_all(aws.dlq_urls["variant"]) == []
    assert receive_all(aws.queue_urls["variant"]) == []


def test_backoff_that_cannot_be_set_still_leaves_the_job_to_be_retried(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.support.faults import THROTTLE, FaultPlan, inject

    # Given a batch of a transient job and a good one, on a real queue
    queue = env.queue_urls["variant"]
    transient_id = send(queue, job_body(TRANSIENT))
    send(queue, job_body(GOOD_1))
    messages = receive_all(queue)
    assert len(messages) == 2

    # When SQS refuses the ChangeMessageVisibility that sets the backoff
    with inject(FaultPlan(targets=("sqs.ChangeMessageVisibility",), kind=THROTTLE)) as plan:
        response = variant_worker.handle(
            event_from_received(messages, env.queue_arns["variant"]), FakeLambdaContext()
        )

    # Then the transient record is still reported as failed, and only it
    assert plan.injected["sqs.ChangeMessageVisibility"] == 1
    assert response == {"batchItemFailures": [{"itemIdentifier": transient_id}]}
    assert sorted(recorder.processed) == sorted([TRANSIENT, GOOD_1])
    # and the refusal is logged, not raised
    warnings = [r for r in caplog.records if r.getMessage() == "could not set backoff"]
    assert len(warnings) == 1
    assert "ThrottlingException" in warnings[0].__dict__["reason"]
    # and the message is not lost: it stays on the queue (invisible for the queue's own
    # visibility timeout instead of the backoff), where SQS will deliver it again
    attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    # Lambda deletes the succeeded record, not us: in this test both are still there.
    assert int(attributes["ApproximateNumberOfMessages"]) == 0
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 2


def test_config_error_goes_to_the_dlq_at_once_named_and_recorded(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
    visibility_changes: list[dict[str, Any]],
) -> None:
    # Given a batch of a job that stops on a missing setting, and a good one
    queue = env.queue_urls["variant"]
    misconfigured_id = send(queue, job_body(MISCONFIGURED))
    send(queue, job_body(GOOD_1))
    messages = receive_all(queue)

    # When the worker handles it
    response = variant_worker.handle(
        event_from_received(messages, env.queue_arns["variant"]), FakeLambdaContext()
    )

    # Then both are acknowledged: the misconfigured one is not retried (no backoff)
    assert response == {"batchItemFailures": []}
    assert visibility_changes == []
    # and the job's hook recorded the error where the job's record shows it
    assert recorder.config_errors == [(MISCONFIGURED, "IMAGES_BUCKET is not set")]
    assert recorder.permanent == []
    # and the message is in the DLQ now, its reason naming the setting and what to do
    [dead] = receive_all(env.dlq_urls["variant"])
    assert dead["Body"] == job_body(MISCONFIGURED)
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes == {
        "pixflare-reason": "configuration: IMAGES_BUCKET is not set; "
        "fix the setting, then `pixflare dlq redrive test-variant`",
        "pixflare-error-kind": "config",
        "pixflare-source-message-id": misconfigured_id,
    }

    # and once redriven (the setting fixed), the job runs again: no idempotency record
    # of the stopped run holds it back
    fixed = QueueWorker(name="test-variant", model=VariantJob, process=lambda job, ctx: None)
    again = fixed.handle(
        event_from_received([dead], env.queue_arns["variant"]), FakeLambdaContext()
    )
    assert again == {"batchItemFailures": []}


def test_config_error_is_left_to_the_redrive_policy_when_the_dlq_refuses_it(
    env: Resources,
    variant_worker: QueueWorker[VariantJob],
    recorder: Recorder,
    visibility_changes: list[dict[str, Any]],
) -> None:
    from tests.support.faults import THROTTLE, FaultPlan, inject

    # Given a job that stops on a missing setting
    queue = env.queue_urls["variant"]
    misconfigured_id = send(queue, job_body(MISCONFIGURED))
    messages = receive_all(queue)

    # When the DLQ refuses the worker's send
    with inject(FaultPlan(targets=("sqs.SendMessage",), kind=THROTTLE)) as plan:
        response = variant_worker.handle(
            event_from_received(messages, env.queue_arns["variant"]), FakeLambdaContext()
        )

    # Then the message is not acknowledged: retried with backoff, and after
    # maxReceiveCount SQS's redrive policy moves it to the DLQ; nothing is lost
    assert plan.injected["sqs.SendMessage"] >= 1
    assert response == {"batchItemFailures": [{"itemIdentifier": misconfigured_id}]}
    assert [c["VisibilityTimeout"] for c in visibility_changes] == [30]
    assert receive_all(env.dlq_urls["variant"]) == []
    # and the error was still recorded on the job's record
    assert recorder.config_errors == [(MISCONFIGURED, "IMAGES_BUCKET is not set")]


def test_config_error_reaches_the_dlq_even_when_its_hook_fails(
    env: Resources, recorder: Recorder
) -> None:
    def broken_hook(job: VariantJob, err: ConfigError, ctx: JobContext) -> None:
        raise ConfigError("IMAGES_TABLE is not set")

    stopped = QueueWorker(
        name="test-variant", model=VariantJob, process=recorder.process, on_config_error=broken_hook
    )
    queue = env.queue_urls["variant"]
    send(queue, job_body(MISCONFIGURED))
    response = stopped.handle(
        event_from_received(receive_all(queue), env.queue_arns["variant"]), FakeLambdaContext()
    )
    assert response == {"batchItemFailures": []}
    [dead] = receive_all(env.dlq_urls["variant"])
    reason = dead["MessageAttributes"]["pixflare-reason"]["StringValue"]
    assert reason.startswith("configuration: IMAGES_BUCKET is not set;")
