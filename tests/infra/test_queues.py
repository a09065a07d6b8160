"""Queues, dead-letter queues and the event source mappings, number by number."""

from __future__ import annotations

import pytest

from infra import config
from tests.infra.support import (
    Template,
    function_by_handler,
    mapping_for,
    props,
    queue_by_name,
    refs,
    resources,
)

pytestmark = pytest.mark.slow

STACK = config.STACK_NAME
# (queue key, handler, batch size, function timeout)
WORKERS = [
    ("variant", "lambdas.variant.handler.handler", 5, 30),
    ("backup", "lambdas.backup.handler.handler", 10, 60),
    ("domain", "lambdas.domain.handler.handler", 5, 30),
]
CRON_HANDLER = "lambdas.cron.handler.handler"


def test_exact_queue_inventory(template: Template) -> None:
    names = {
        res["Properties"].get("QueueName")
        for res in resources(template, "AWS::SQS::Queue").values()
    }
    worker_sources = {f"{STACK}-{key}" for key, *_ in WORKERS}
    worker_dlqs = {f"{STACK}-{key}-dlq" for key, *_ in WORKERS}
    cron = {f"{STACK}-cron", f"{STACK}-cron-dlq"}
    assert len(worker_sources) == 3
    assert len(worker_dlqs) == 3
    # 3 worker queues + 3 worker DLQs + cron continuation queue + its DLQ
    # + the EventBridge targets' DLQ (unnamed) = 9.
    assert names == worker_sources | worker_dlqs | cron | {None}
    assert len(resources(template, "AWS::SQS::Queue")) == 9


def test_events_dlq_is_separate_and_unnamed(template: Template) -> None:
    unnamed = [
        lid
        for lid, res in resources(template, "AWS::SQS::Queue").items()
        if "QueueName" not in res["Properties"]
    ]
    assert len(unnamed) == 1
    assert unnamed[0].startswith("SchedulesEventsDlq")
    assert props(template, unnamed[0])["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert props(template, unnamed[0])["SqsManagedSseEnabled"] is True


@pytest.mark.parametrize("key", ["variant", "backup", "domain", "cron"])
def test_redrive_to_own_dlq(template: Template, key: str) -> None:
    source = queue_by_name(template, f"{STACK}-{key}")
    dlq = queue_by_name(template, f"{STACK}-{key}-dlq")
    redrive = props(template, source)["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 3
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq, "Arn"]}
    assert props(template, dlq)["MessageRetentionPeriod"] == 1_209_600
    assert props(template, source)["MessageRetentionPeriod"] == 4 * 24 * 3600
    assert "RedrivePolicy" not in props(template, dlq)


@pytest.mark.parametrize("key", ["variant", "backup", "domain", "cron"])
def test_dlq_redrive_allow_policy_names_its_source(template: Template, key: str) -> None:
    dlq = queue_by_name(template, f"{STACK}-{key}-dlq")
    allow = props(template, dlq)["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    (arn,) = allow["sourceQueueArns"]
    joined = arn["Fn::Join"][1]
    assert joined[-1] == f":{STACK}-{key}"
    assert ":sqs:" in joined


def test_every_queue_encrypted_and_tls_only(template: Template) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    for lid, res in queues.items():
        assert res["Properties"].get("SqsManagedSseEnabled") is True, lid
    covered: set[str] = set()
    for res in resources(template, "AWS::SQS::QueuePolicy").values():
        for st in res["Properties"]["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Deny" and st.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                covered |= refs(res["Properties"]["Queues"])
    assert covered == set(queues)


@pytest.mark.parametrize(("key", "handler", "batch", "timeout"), WORKERS)
def test_worker_mapping_numbers(
    template: Template, key: str, handler: str, batch: int, timeout: int
) -> None:
    fn = function_by_handler(template, handler)
    queue = queue_by_name(template, f"{STACK}-{key}")
    mapping = mapping_for(template, fn)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert mapping["BatchSize"] == batch
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= mapping["ScalingConfig"]["MaximumConcurrency"] <= 10
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == config.MAX_CONCURRENCY
    assert 1 <= mapping["MaximumBatchingWindowInSeconds"] <= 2
    assert props(template, fn)["Timeout"] == timeout
    assert props(template, queue)["VisibilityTimeout"] == 6 * timeout


def test_batch_sizes_in_order(template: Template) -> None:
    sizes = [
        mapping_for(template, function_by_handler(template, handler))["BatchSize"]
        for _, handler, _, _ in WORKERS
    ]
    assert sizes == [5, 10, 5]


def test_cron_continuation_queue_mapping(template: Template) -> None:
    fn = function_by_handler(template, CRON_HANDLER)
    queue = queue_by_name(template, f"{STACK}-cron")
    mapping = mapping_for(template, fn)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert mapping["BatchSize"] == 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] >= 2
    assert props(template, fn)["Timeout"] == 300
    assert props(template, queue)["VisibilityTimeout"] == 6 * 300


def test_every_mapping_visibility_is_six_times_timeout(template: Template) -> None:
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 4
    for res in mappings.values():
        mapping = res["Properties"]
        fn = mapping["FunctionName"]["Ref"]
        queue = mapping["EventSourceArn"]["Fn::GetAtt"][0]
        assert props(template, queue)["VisibilityTimeout"] == 6 * props(template, fn)["Timeout"]


def test_enable_queues_false_removes_workers(queues_off: Template) -> None:
    names = {
        res["Properties"].get("QueueName")
        for res in resources(queues_off, "AWS::SQS::Queue").values()
    }
    assert names == {f"{STACK}-cron", f"{STACK}-cron-dlq", None}
    handlers = {
        res["Properties"]["Handler"]
        for res in resources(queues_off, "AWS::Lambda::Function").values()
    }
    assert handlers == {CRON_HANDLER}
    assert len(resources(queues_off, "AWS::Lambda::EventSourceMapping")) == 1
