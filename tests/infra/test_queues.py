"""Queues, dead-letter queues and the event source mappings, number by number."""

from __future__ import annotations

import pytest

from infra import config
from tests.infra.support import (
    DEFAULT,
    DOMAINS_OFF,
    NAMED,
    QUEUES_OFF,
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
    ("ingest", "lambdas.ingest.handler.handler", 10, 30),
]
# MaximumBatchingWindowInSeconds (0: not set): ingest has none, users wait for it.
BATCHING_WINDOW = {"variant": 1, "backup": 1, "domain": 1, "ingest": 0}
CRON_HANDLER = "lambdas.cron.handler.handler"


def test_exact_queue_inventory(template: Template) -> None:
    names = {
        res["Properties"].get("QueueName")
        for res in resources(template, "AWS::SQS::Queue").values()
    }
    worker_sources = {f"{STACK}-{key}" for key, *_ in WORKERS}
    worker_dlqs = {f"{STACK}-{key}-dlq" for key, *_ in WORKERS}
    cron = {f"{STACK}-cron", f"{STACK}-cron-dlq", f"{STACK}-cron-failed"}
    assert len(worker_sources) == 4
    assert len(worker_dlqs) == 4
    # 4 worker queues + 4 worker DLQs + cron continuation queue + its DLQ + the cron
    # function's on-failure queue + the EventBridge targets' DLQ (unnamed) = 12.
    assert names == worker_sources | worker_dlqs | cron | {None}
    assert len(resources(template, "AWS::SQS::Queue")) == 12


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


@pytest.mark.parametrize("key", ["variant", "backup", "domain", "ingest", "cron"])
def test_redrive_to_own_dlq(template: Template, key: str) -> None:
    source = queue_by_name(template, f"{STACK}-{key}")
    dlq = queue_by_name(template, f"{STACK}-{key}-dlq")
    redrive = props(template, source)["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 3
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq, "Arn"]}
    assert props(template, dlq)["MessageRetentionPeriod"] == 1_209_600
    assert props(template, source)["MessageRetentionPeriod"] == 4 * 24 * 3600
    assert "RedrivePolicy" not in props(template, dlq)


@pytest.mark.parametrize("key", ["variant", "backup", "domain", "ingest", "cron"])
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
    assert mapping.get("MaximumBatchingWindowInSeconds", 0) == BATCHING_WINDOW[key]
    assert props(template, fn)["Timeout"] == timeout
    assert props(template, queue)["VisibilityTimeout"] == 6 * timeout


def test_batch_sizes_in_order(template: Template) -> None:
    sizes = [
        mapping_for(template, function_by_handler(template, handler))["BatchSize"]
        for _, handler, _, _ in WORKERS
    ]
    assert sizes == [5, 10, 5, 10]


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
    assert len(mappings) == 5
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
    assert names == {f"{STACK}-cron", f"{STACK}-cron-dlq", f"{STACK}-cron-failed", None}
    handlers = {
        res["Properties"]["Handler"]
        for res in resources(queues_off, "AWS::Lambda::Function").values()
    }
    assert handlers == {CRON_HANDLER}
    assert len(resources(queues_off, "AWS::Lambda::EventSourceMapping")) == 1


def _concurrency(template: Template) -> dict[str, int]:
    """MaximumConcurrency of each mapping, by the key of the queue it reads."""
    found: dict[str, int] = {}
    for res in resources(template, "AWS::Lambda::EventSourceMapping").values():
        queue = res["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        name = props(template, queue)["QueueName"]
        found[name.rsplit("-", 1)[-1]] = res["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    return found


@pytest.mark.parametrize(
    ("fixture", "context", "expected"),
    [
        # budget 12 (five mappings need 11): 2 each + 1 for the scheduled runs, the 1
        # left to variant
        (
            "template",
            DEFAULT,
            {"variant": 3, "backup": 2, "domain": 2, "ingest": 2, "cron": 2},
        ),
        # budget 20: 9 spare shared 3:2:1:1 (largest remainders first)
        ("named", NAMED, {"variant": 6, "backup": 5, "domain": 3, "ingest": 3, "cron": 2}),
        # budget 10 (the default), no custom domains: 4 mappings, the 1 left to variant
        ("domains_off", DOMAINS_OFF, {"variant": 3, "backup": 2, "ingest": 2, "cron": 2}),
        ("queues_off", QUEUES_OFF, {"cron": 2}),
    ],
)
def test_mapping_concurrency_is_derived_from_the_budget(
    fixture: str, context: dict[str, str], expected: dict[str, int], request: pytest.FixtureRequest
) -> None:
    template: Template = request.getfixturevalue(fixture)
    settings = config.AppSettings.from_context(context)
    found = _concurrency(template)
    assert found == expected == settings.concurrency
    assert all(2 <= value <= 1000 for value in found.values())
    # The mappings and the daily jobs' scheduled runs fit the budget.
    assert sum(found.values()) + config.SCHEDULED_CONCURRENCY <= settings.concurrency_budget


def test_without_a_cname_target_custom_domains_are_left_out(domains_off: Template) -> None:
    names = {
        res["Properties"].get("QueueName")
        for res in resources(domains_off, "AWS::SQS::Queue").values()
    }
    assert not {f"{STACK}-domain", f"{STACK}-domain-dlq"} & names
    assert {f"{STACK}-variant", f"{STACK}-backup", f"{STACK}-cron"} <= names
    handlers = {
        res["Properties"]["Handler"]
        for res in resources(domains_off, "AWS::Lambda::Function").values()
    }
    assert "lambdas.domain.handler.handler" not in handlers
    assert len(resources(domains_off, "AWS::Lambda::EventSourceMapping")) == 4


def test_leaving_custom_domains_out_says_so() -> None:
    from infra.stack import DOMAINS_LEFT_OUT
    from infra.synth import DISABLE_ASSET_STAGING, build_app, cdk_json_context

    _, stack = build_app({**cdk_json_context(), **DOMAINS_OFF, DISABLE_ASSET_STAGING: True})
    infos = [
        entry.data
        for entry in stack.node.metadata
        if entry.type == "aws:cdk:info"  # what `cdk synth` prints as [Info]
    ]
    assert infos == [DOMAINS_LEFT_OUT]
    assert "-c customDomainFallbackCname=" in DOMAINS_LEFT_OUT


def test_a_named_stack_prefixes_every_named_resource(named: Template) -> None:
    name = NAMED["stackName"]
    queues = {
        res["Properties"].get("QueueName") for res in resources(named, "AWS::SQS::Queue").values()
    }
    keys = ["variant", "backup", "domain", "ingest", "cron"]
    assert queues == {f"{name}-{k}" for k in keys} | {f"{name}-{k}-dlq" for k in keys} | {
        f"{name}-cron-failed",
        None,
    }
    # Every explicit physical name in the template starts with the stack's name.
    named_props = (
        "QueueName",
        "BucketName",
        "TableName",
        "FunctionName",
        "LogGroupName",
        "Name",
        "TopicName",
        "AlarmName",
        "DashboardName",
        "RoleName",
        "KeyAlias",
    )
    for lid, res in named["Resources"].items():
        for prop in named_props:
            value = res.get("Properties", {}).get(prop)
            if isinstance(value, str):
                assert value.startswith(f"{name}-"), (lid, prop, value)
    # The redrive-allow policies still name their source queues.
    for key in keys:
        dlq = queue_by_name(named, f"{name}-{key}-dlq")
        (arn,) = props(named, dlq)["RedriveAllowPolicy"]["sourceQueueArns"]
        assert arn["Fn::Join"][1][-1] == f":{name}-{key}"
