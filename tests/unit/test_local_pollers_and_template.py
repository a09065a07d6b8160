"""The local stack's template evaluator and its event-source-mapping rules, without sockets."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lambdas.shared.config import settings_from_env
from lambdas.shared.errors import ConfigError
from pixflare.local.environments import Invocation
from pixflare.local.functions import function_environment
from pixflare.local.pollers import QueuePoller, failed_item_ids, sqs_event
from pixflare.local.template import (
    FunctionSpec,
    MappingSpec,
    Provisioner,
    TemplateError,
    physical_name,
)


def provisioner(template: dict[str, Any]) -> Provisioner:
    def no_clients(service: str) -> Any:
        raise AssertionError(f"no AWS call expected ({service})")

    return Provisioner(template, clients=no_clients, stack_name="Stack", region="eu-west-1")


def test_intrinsics_resolve_pseudo_parameters_and_parameter_defaults() -> None:
    resolver = provisioner({"Resources": {}, "Parameters": {"Env": {"Default": "dev"}}})
    joined = {"Fn::Join": [":", ["arn", {"Ref": "AWS::Partition"}, {"Ref": "AWS::Region"}]]}
    assert resolver.resolve(joined) == "arn:aws:eu-west-1"
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-${Env}-${!Literal}"}) == (
        "Stack-dev-${Literal}"
    )
    assert resolver.resolve({"Fn::Sub": ["${A}/${AWS::AccountId}", {"A": {"Ref": "Env"}}]}) == (
        "dev/123456789012"
    )
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert resolver.resolve({"Nested": [{"Ref": "Env"}]}) == {"Nested": ["dev"]}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"Fn::If": ["C", "a", "b"]}, "cannot evaluate Fn::If"),
        ({"Fn::ImportValue": "x"}, "cannot evaluate Fn::ImportValue"),
        ({"Ref": "Missing"}, "unknown resource or parameter Missing"),
    ],
)
def test_what_it_cannot_evaluate_is_refused_by_name(value: Any, says: str) -> None:
    with pytest.raises(TemplateError, match=says):
        provisioner({"Resources": {}}).resolve(value)


def test_templates_with_conditions_are_refused() -> None:
    with pytest.raises(TemplateError, match="Conditions"):
        provisioner({"Resources": {}, "Conditions": {"C": {"Fn::Equals": ["a", "b"]}}})


def test_resource_types_without_a_local_counterpart_are_listed() -> None:
    template = {
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role"},
            "Alarm1": {"Type": "AWS::CloudWatch::Alarm"},
            "Alarm2": {"Type": "AWS::CloudWatch::Alarm"},
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Function": {"Type": "AWS::Lambda::Function"},
        }
    }
    assert provisioner(template).not_created() == {
        "AWS::IAM::Role": 1,
        "AWS::CloudWatch::Alarm": 2,
    }


def test_derived_names_follow_the_logical_id_and_bucket_rules() -> None:
    assert physical_name("Pixflare", "VariantDlqD85AD15B") == "Pixflare-VariantDlqD85AD15B"
    bucket = physical_name("Pixflare", "Images_BucketCEC1", lowercase=True, limit=63)
    assert bucket == "pixflare-images-bucketcec1"
    assert len(physical_name("S" * 50, "L" * 50, limit=64)) == 64


def test_a_function_lambda_reports_as_failed_items_or_an_unusable_response() -> None:
    ids = {"a", "b"}
    assert failed_item_ids(None, ids) == set()
    assert failed_item_ids({"batchItemFailures": []}, ids) == set()
    assert failed_item_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == {"b"}
    # As on AWS: a failure naming a message outside the batch fails the whole batch.
    assert failed_item_ids({"batchItemFailures": [{"itemIdentifier": "zz"}]}, ids) is None
    assert failed_item_ids({"batchItemFailures": "b"}, ids) is None
    assert failed_item_ids("ok", ids) is None


def test_the_event_matches_what_lambdas_sqs_poller_sends() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "{}",
        "MD5OfBody": "x",
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"pixflare-reason": {"StringValue": "bad", "DataType": "String"}},
    }
    record = sqs_event([message], "arn:aws:sqs:eu-west-1:1:q", "eu-west-1")["Records"][0]
    assert record["messageId"] == "m1"
    assert record["receiptHandle"] == "r1"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:eu-west-1:1:q"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["pixflare-reason"]["stringValue"] == "bad"


def function(handler: str, timeout: int = 5, env: dict[str, str] | None = None) -> FunctionSpec:
    return FunctionSpec(
        logical_id="Fn",
        name="Stack-Fn",
        arn="arn:aws:lambda:eu-west-1:1:function:Stack-Fn",
        handler=handler,
        timeout_seconds=timeout,
        memory_mb=128,
        environment=env or {},
    )


def test_runtime_settings_from_the_stacks_environment_win_but_resource_names_do_not() -> None:
    spec = function(
        "lambdas.variant.handler.handler",
        env={"ENABLE_AI_CLASSIFICATION": "false", "IMAGES_BUCKET": "from-template"},
    )
    environment = function_environment(
        spec,
        {"ENABLE_AI_CLASSIFICATION": "true", "IMAGES_BUCKET": "from-shell", "HOME": "/x"},
        lambda_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"},
    )
    settings = settings_from_env(environment)
    assert settings.enable_ai_classification is True
    assert settings.images_bucket == "from-template"
    assert "HOME" not in environment
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"


def test_a_bad_runtime_setting_in_the_stacks_environment_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="PIXFLARE_BACKOFF_BASE_SECONDS"):
        function_environment(
            function("lambdas.variant.handler.handler"),
            {"PIXFLARE_BACKOFF_BASE_SECONDS": "soon"},
            lambda_env={},
        )


class RecordingFunction:
    """Stands in for a function: returns what the event's "respond" key holds."""

    def __init__(self, *, fail: Invocation | None = None) -> None:
        self.spec = function("recording.handler")
        self.fail = fail
        self.events: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return self.spec.name

    def invoke(self, event: Any) -> Invocation:
        self.events.append(event)
        if self.fail is not None:
            return self.fail
        return Invocation(ok=True, response=event.get("respond"))


class FakeQueue:
    """Just enough of SQS for the poller's delete decisions."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete_message_batch(self, **request: Any) -> Any:
        entries = request["Entries"]
        self.deleted.extend(e["ReceiptHandle"] for e in entries)
        return {"Successful": [{"Id": e["Id"]} for e in entries]}


def poller(report_failures: bool, queue: FakeQueue) -> QueuePoller:
    mapping = MappingSpec(
        logical_id="Map",
        function="Fn",
        queue_url="http://queue",
        queue_arn="arn:aws:sqs:eu-west-1:1:q",
        batch_size=3,
        batching_window_seconds=0,
        report_batch_item_failures=report_failures,
        max_concurrency=1,
        enabled=True,
    )
    return QueuePoller(
        mapping, RecordingFunction(), sqs=queue, region="eu-west-1", stop=threading.Event()
    )


def batch(*ids: str) -> list[dict[str, Any]]:
    return [
        {"MessageId": i, "ReceiptHandle": f"rh-{i}", "Body": "{}", "Attributes": {}} for i in ids
    ]


def respond(poller_: QueuePoller, response: Any, ids: tuple[str, ...]) -> None:
    # The recording handler returns what the event's "respond" key holds.
    messages = batch(*ids)
    original = poller_.function.invoke
    poller_.function.invoke = lambda event: original({**event, "respond": response})  # type: ignore[method-assign]
    poller_._invoke(messages)


def test_with_partial_batch_responses_only_the_successful_messages_are_deleted() -> None:
    queue = FakeQueue()
    respond(poller(True, queue), {"batchItemFailures": [{"itemIdentifier": "b"}]}, ("a", "b", "c"))
    assert queue.deleted == ["rh-a", "rh-c"]


def test_an_unusable_partial_response_fails_the_whole_batch() -> None:
    queue = FakeQueue()
    respond(poller(True, queue), {"batchItemFailures": [{"itemIdentifier": "x"}]}, ("a", "b"))
    assert queue.deleted == []


def test_without_partial_batch_responses_a_returned_batch_is_all_deleted() -> None:
    queue = FakeQueue()
    respond(poller(False, queue), {"batchItemFailures": [{"itemIdentifier": "b"}]}, ("a", "b"))
    assert queue.deleted == ["rh-a", "rh-b"]


def test_a_timed_out_batch_deletes_nothing() -> None:
    queue = FakeQueue()
    slow = poller(True, queue)
    slow.function = RecordingFunction(
        fail=Invocation(ok=False, timed_out=True, error="Task timed out after 1.00 seconds")
    )
    slow._invoke(batch("a", "b"))
    assert queue.deleted == []
    assert slow.stats.failed_batches == 1
