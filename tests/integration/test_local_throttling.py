"""The local stack's account concurrency limit: a throttled SQS batch is retried until
its visibility timeout, then given up, counted, and its messages come back (not
deleted), their receive counted toward maxReceiveCount, as Lambda's poller does."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pixflare.local.environments import FunctionImage, Invocation
from pixflare.local.functions import AccountConcurrency, LocalFunction
from pixflare.local.pollers import QueuePoller
from pixflare.local.template import FunctionSpec, MappingSpec

pytestmark = pytest.mark.slow

REGION = "us-east-1"
VISIBILITY_SECONDS = 2


def local_function(name: str, concurrency: AccountConcurrency, work: Any) -> LocalFunction:
    spec = FunctionSpec(
        logical_id=name,
        name=name,
        arn=f"arn:aws:lambda:{REGION}:123456789012:function:{name}",
        handler="handler.handle",
        timeout_seconds=30,
        memory_mb=128,
        environment={},
    )
    image = FunctionImage(Path("python3.12"), Path("."), Path("."), Path("."))
    function = LocalFunction(
        spec, image=image, environment={}, region=REGION, concurrency=concurrency
    )
    # No process: the execution environment is replaced by the work it would do.
    function.environments.invoke = work  # type: ignore[method-assign]
    return function


def test_a_throttled_batch_is_counted_and_its_messages_come_back() -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(
            QueueName="jobs", Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)}
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        concurrency = AccountConcurrency(1)
        release_busy = threading.Event()
        handled: list[str] = []

        def busy(_event: Any) -> Invocation:  # another function holding the only slot
            release_busy.wait(20)
            return Invocation(ok=True)

        def worker(event: Any) -> Invocation:
            handled.extend(r["messageId"] for r in event["Records"])
            return Invocation(ok=True)

        other = local_function("other", concurrency, busy)
        consumer = local_function("consumer", concurrency, worker)
        blocker = threading.Thread(target=other.invoke, args=({},), daemon=True)
        blocker.start()
        deadline = time.monotonic() + 5
        while concurrency.in_use < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert concurrency.in_use == 1

        stop = threading.Event()
        mapping = MappingSpec(
            logical_id="Map",
            function="consumer",
            queue_url=url,
            queue_arn=arn,
            batch_size=5,
            batching_window_seconds=0,
            report_batch_item_failures=True,
            max_concurrency=1,
            enabled=True,
        )
        poller = QueuePoller(mapping, consumer, sqs=sqs, region=REGION, stop=stop)
        sent = sqs.send_message(QueueUrl=url, MessageBody='{"n": 1}')["MessageId"]
        poller.start()
        try:
            deadline = time.monotonic() + 10
            while poller.stats.throttled_batches < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            # Given up after its visibility timeout, never handled, nothing deleted.
            assert poller.stats.throttled_batches == 1
            assert poller.stats.throttled_messages == 1
            assert poller.stats.throttled_attempts >= 2
            assert consumer.throttles == poller.stats.throttled_attempts
            assert handled == []
            assert poller.stats.deleted == 0

            # The slot frees: the same message comes back on its second receive and is done.
            release_busy.set()
            deadline = time.monotonic() + 10
            while poller.stats.deleted < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert handled[-1] == sent
            assert poller.stats.deleted == 1
            assert len(handled) == 1
            assert poller.stats.messages == 2  # received twice: the throttled receive counted
        finally:
            stop.set()
            release_busy.set()
            poller.join(5)
            blocker.join(5)
