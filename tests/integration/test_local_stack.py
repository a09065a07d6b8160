"""The embedded local stack as a black box over HTTP: one stack for the module.

The stack is built from the synthesized CDK template, so the numbers asserted here
(batch sizes, maxReceiveCount) are read from that template, never restated.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.shared.aws import MAX_ATTEMPTS
from lambdas.shared.messages import BackupJob, VariantJob
from pixflare.cli import main
from pixflare.local import samples
from pixflare.local.aws_proxy import AwsFaultProxy
from pixflare.local.stack import LocalStack, default_stack_name
from pixflare.local.synth import synthesize_template
from pixflare.local.template import Provisioner
from pixflare.resolve import stack_outputs
from tests.support.faults import INTERNAL, FaultPlan
from tests.support.local_stack import started_stack, use_stack_clients, wait_until
from tests.support.s3_target import S3Target

pytestmark = pytest.mark.slow

PIXFLARE = Path(sys.executable).with_name("pixflare")
SETTLE_DEADLINE_SECONDS = 60  # a bound on polling loops, not an assertion on speed


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synthesize_template()


@pytest.fixture(scope="module")
def proxy() -> Iterator[AwsFaultProxy]:
    """Between the functions and moto, where tests inject faults. Its upstream (the
    stack's moto endpoint) exists only once the stack runs; until the stack fixture
    sets it, requests wait for it."""
    with AwsFaultProxy() as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, proxy: AwsFaultProxy
) -> Iterator[LocalStack]:
    # The functions reach AWS through the proxy; this process (the CLI, the pollers,
    # the tests' own clients) talks to moto directly, so no fault reaches it.
    with started_stack(
        tmp_path_factory, "local-stack", template=template, function_endpoint=proxy.endpoint
    ) as running:
        proxy.upstream = running.endpoint
        yield running


@pytest.fixture(autouse=True)
def stack_env(monkeypatch: pytest.MonkeyPatch, stack: LocalStack) -> None:
    use_stack_clients(monkeypatch, stack)


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def client(stack: LocalStack, service: str) -> Any:
    return stack.client(service)


def mapping_properties(template: dict[str, Any], function_prefix: str) -> dict[str, Any]:
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        if resource["Properties"]["FunctionName"]["Ref"].startswith(function_prefix):
            return dict(resource["Properties"])
    raise AssertionError(f"no event source mapping for {function_prefix}")


def max_receive_count(template: dict[str, Any], queue_prefix: str) -> int:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue" and logical_id.startswith(queue_prefix):
            return int(resource["Properties"]["RedrivePolicy"]["maxReceiveCount"])
    raise AssertionError(f"no queue {queue_prefix}")


def queue_depth(stack: LocalStack, url: str) -> int:
    attributes = client(stack, "sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_three_uploads_through_the_console_script_reach_ready_with_eight_objects(
    stack: LocalStack, tmp_path: Path
) -> None:
    # Given three images of different formats on disk
    files = []
    for sample in samples.demo_samples()[:3]:
        path = tmp_path / sample.filename
        path.write_bytes(sample.data)
        files.append(str(path))
    env = {**os.environ, "AWS_ENDPOINT_URL": stack.endpoint}
    # When the installed `pixflare` command uploads them and waits
    done = subprocess.run(
        [
            str(PIXFLARE),
            "upload",
            *files,
            "--owner",
            "alice",
            "--album",
            "trip",
            "--wait",
            "60",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then each is ready with its eight variants, and the bucket holds them
    assert done.returncode == 0, done.stderr
    statuses = json.loads(done.stdout)
    assert [s["variants_status"] for s in statuses] == ["ready"] * 3
    s3 = client(stack, "s3")
    for status in statuses:
        assert len(status["variants_ready"]) == 8
        prefix = f"alice/trip/{status['filename']}/"
        keys = {
            o["Key"] for o in s3.list_objects_v2(Bucket=status["bucket"], Prefix=prefix)["Contents"]
        }
        assert keys - {prefix + "original"} == {v["key"] for v in status["variants"].values()}
        assert len(keys - {prefix + "original"}) == 8


def test_batch_sizes_observed_by_the_workers_equal_the_templates(
    stack: LocalStack, template: dict[str, Any]
) -> None:
    sqs = client(stack, "sqs")
    for output, prefix, job in (
        ("VariantQueueUrl", "Variant", lambda i: VariantJob(imageId=f"{i:032x}", owner="batch")),
        (
            "BackupQueueUrl",
            "Backup",
            lambda i: BackupJob(
                imageId=f"{i:032x}", owner="batch", action="upload", requestedAt="2026-01-01"
            ),
        ),
    ):
        batch_size = int(mapping_properties(template, prefix)["BatchSize"])
        poller = stack.poller_for(output)
        before = poller.stats.batch_sizes.copy()
        handled_before = poller.stats.messages
        # Given twice the batch size queued at once
        for start in range(0, 2 * batch_size, 10):
            count = min(10, 2 * batch_size - start)
            sqs.send_message_batch(
                QueueUrl=stack.outputs[output],
                Entries=[
                    {"Id": str(n), "MessageBody": job(start + n + 1).to_body()}
                    for n in range(count)
                ],
            )
        # When the worker has taken them all
        wait_until(
            lambda p=poller, h=handled_before, n=batch_size: p.stats.messages >= h + 2 * n,
            f"{output} messages handled",
        )
        # Then it took them in two full batches of the template's size
        new = poller.stats.batch_sizes - before
        assert dict(new) == {batch_size: 2}, (output, dict(new))


def test_poison_message_reaches_the_dlq_after_max_receive_count_and_redrive_brings_it_back(
    stack: LocalStack, proxy: AwsFaultProxy, template: dict[str, Any], tmp_path: Path
) -> None:
    receives = max_receive_count(template, "VariantQueue")
    photo = tmp_path / "outage.jpg"
    photo.write_bytes(samples.photo_jpeg(320, 240))
    dlq_url = stack.outputs["VariantDlqUrl"]
    key = "carol/outage/outage.jpg/original"
    # Given S3 failing every read of one image's original (a transient error), as the
    # functions see S3; the upload below goes to the stack directly, untouched
    plan = FaultPlan(
        targets=("s3.GetObject",),
        kind=INTERNAL,
        only_if=lambda params: params.get("url_path", "").endswith(key),
    )
    with proxy.faults(plan):
        code, out, err = cli(
            "--endpoint", stack.endpoint, "upload", str(photo), "--owner", "carol",
            "--album", "outage", "--json",
        )  # fmt: skip
        assert code == 0, err
        image_id = json.loads(out)["imageId"]
        # When the variant worker has given up on it
        wait_until(lambda: queue_depth(stack, dlq_url) == 1, "the job in the DLQ")
    # Then it was received exactly maxReceiveCount times before SQS moved it. This is
    # the exact check: the count is SQS's own bookkeeping, the same however long each
    # attempt took (the reading below is one more receive, hence the + 1). A worker
    # that had rejected the job itself would have sent a new message (count 1).
    # The number of refused S3 attempts is not exact: each receive makes one GetObject
    # call, but the SDK's attempts per call (up to MAX_ATTEMPTS) depend on the client
    # tier chosen from the invocation's time left (lambdas.shared.aws), so it is bounded.
    held = client(stack, "sqs").receive_message(
        QueueUrl=dlq_url, VisibilityTimeout=0, AttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert [int(m["Attributes"]["ApproximateReceiveCount"]) for m in held] == [receives + 1]
    assert set(plan.injected) == {"s3.GetObject"}
    # The original's S3 event also reaches the ingest function, whose reads of it fail
    # the same way until its own queue gives up (maxReceiveCount of the ingest queue).
    ingest_receives = max_receive_count(template, "IngestQueue")
    attempts = plan.injected["s3.GetObject"]
    assert receives <= attempts <= (receives + ingest_receives) * MAX_ATTEMPTS
    code, out, _ = cli("--endpoint", stack.endpoint, "status", image_id, "--json")
    assert json.loads(out)["variants_status"] == "pending"
    code, out, _ = cli("--endpoint", stack.endpoint, "dlq", "list", "--json")
    listed = {entry["queue"]: entry for entry in json.loads(out)}
    assert listed["variant"]["depth"] == 1
    assert json.loads(listed["variant"]["messages"][0]["body"])["imageId"] == image_id

    # When the outage is over and the operator redrives the DLQ
    code, out, err = cli("--endpoint", stack.endpoint, "dlq", "redrive", "variant", "--json")
    assert code == 0, err
    assert json.loads(out)["moved"] == 1

    # Then the job runs again and the image is ready; the DLQ is empty
    def ready() -> bool:
        _, status, _ = cli("--endpoint", stack.endpoint, "status", image_id, "--json")
        return bool(json.loads(status)["variants_status"] == "ready")

    wait_until(ready, "the redriven job")
    assert queue_depth(stack, dlq_url) == 0


def test_an_invalid_message_goes_to_the_dlq_with_its_reason_and_a_redrive_does_not_loop(
    stack: LocalStack,
) -> None:
    dlq_url = stack.outputs["DomainDlqUrl"]
    # Given a message no schema accepts, on the domain queue
    client(stack, "sqs").send_message(
        QueueUrl=stack.outputs["DomainQueueUrl"], MessageBody='{"v": 1, "hostname": 7}'
    )
    wait_until(lambda: queue_depth(stack, dlq_url) == 1, "the invalid message in the DLQ")
    # Then `dlq list` shows why it is there
    code, out, _ = cli("--endpoint", stack.endpoint, "dlq", "list", "--json")
    domain = next(entry for entry in json.loads(out) if entry["queue"] == "domain")
    assert domain["messages"][0]["reason"]
    # When it is redriven, it is skipped: it can never succeed
    code, out, err = cli("--endpoint", stack.endpoint, "dlq", "redrive", "domain", "--json")
    assert code == 0, err
    assert (json.loads(out)["moved"], json.loads(out)["skipped"]) == (0, 1)
    # And moved anyway when asked, it comes back once (no loop)
    code, out, err = cli(
        "--endpoint", stack.endpoint, "dlq", "redrive", "domain", "--include-invalid", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["moved"] == 1
    wait_until(lambda: queue_depth(stack, dlq_url) == 1, "the message back in the DLQ")


def test_backup_runs_end_to_end_from_the_artifacts_against_an_s3_compatible_target(
    stack: LocalStack, tmp_path: Path
) -> None:
    # Given an owner whose destination is a second S3-compatible server (its own
    # credentials), and the backup function running from its code asset and layers
    with S3Target(bucket="frank-backups") as target:
        code, _, err = cli(
            "--endpoint", stack.endpoint, "backup", "set", "--owner", "frank",
            "--endpoint", target.endpoint, "--bucket", target.bucket,
            "--access-key-id", target.access_key_id,
            "--secret-access-key", target.secret_access_key, "--path-style", "--encrypt",
        )  # fmt: skip
        assert code == 0, err
        photo = tmp_path / "frank.jpg"
        photo.write_bytes(samples.photo_jpeg(300, 200))
        # When an image is uploaded
        code, out, err = cli(
            "--endpoint", stack.endpoint, "upload", str(photo), "--owner", "frank",
            "--album", "trip", "--json",
        )  # fmt: skip
        assert code == 0, err
        image_id = json.loads(out)["imageId"]

        def synced() -> bool:
            _, status, _ = cli("--endpoint", stack.endpoint, "status", image_id, "--json")
            return bool(json.loads(status)["backup_status"] == "synced")

        # Then the backup function stores an encrypted copy in the owner's bucket
        wait_until(synced, "the image's backup")
        assert len(target.objects()) == 1
        # And it reads back as the same bytes
        restored = tmp_path / "restored.jpg"
        code, _, err = cli(
            "--endpoint", stack.endpoint, "backup", "restore", image_id, "--to", str(restored)
        )
        assert code == 0, err
        assert restored.read_bytes() == photo.read_bytes()
    backup = next(f for f in stack.functions.values() if ".backup." in f.spec.handler)
    assert backup.stats.invocations >= 1 and backup.stats.cold_starts >= 1


def test_a_scheduled_rule_runs_its_job_through_the_cron_functions_environments(
    stack: LocalStack, template: dict[str, Any]
) -> None:
    # Given the cleanup rule of the template (01:00 UTC)
    (rule_id,) = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Events::Rule"
        and resource["Properties"].get("ScheduleExpression") == "cron(0 1 * * ? *)"
    ]
    cron = next(f for f in stack.functions.values() if ".cron." in f.spec.handler)
    before = cron.stats.invocations
    # When it fires
    (run,) = stack.run_rule(rule_id)
    # Then the cron function ran it in an execution environment of its own, and it
    # finished (its continuation, if any, goes through the cron queue's mapping)
    assert run.ok, run.error
    assert cron.stats.invocations == before + 1
    assert cron.stats.init_durations_ms, "no cold start was reported"


def test_status_of_an_unknown_image_exits_non_zero_with_one_line(stack: LocalStack) -> None:
    code, out, err = cli("--endpoint", stack.endpoint, "status", "f" * 32, "--json")
    assert code != 0
    assert out == ""
    assert err.count("\n") == 1
    assert "no image" in err


def test_api_keys_live_in_the_templates_table_found_from_the_outputs(stack: LocalStack) -> None:
    # Given the local stack, whose API keys table came from the template
    table = stack_outputs(stack.stack_name, endpoint=stack.endpoint)["ApiKeysTableName"]
    code, out, err = cli("--endpoint", stack.endpoint, "keys", "create", "--owner", "ivy", "--json")
    assert code == 0, err
    created = json.loads(out)
    # Then it is stored there by its id, and listed and revoked through the commands
    item = client(stack, "dynamodb").get_item(
        TableName=table, Key={"key_id": {"S": created["keyId"]}}
    )["Item"]
    assert item["owner"] == {"S": "ivy"} and created["key"] not in json.dumps(item)
    code, out, err = cli("--endpoint", stack.endpoint, "keys", "list", "--owner", "ivy", "--json")
    assert code == 0, err
    assert [k["keyId"] for k in json.loads(out)] == [created["keyId"]]
    code, out, err = cli("--endpoint", stack.endpoint, "keys", "revoke", created["keyId"], "--json")
    assert code == 0 and json.loads(out)["revoked"] is True, err


def variant_report(line: str) -> bool:
    return "REPORT RequestId:" in line and "Init Duration" in line and "Variant" in line


def outputs_of(endpoint: str) -> dict[str, str]:
    return stack_outputs(default_stack_name(), endpoint=endpoint, region="us-east-1")


def functions_run_locally(template: dict[str, Any]) -> list[str]:
    """The template's functions less the custom resources' providers (not run locally)."""
    providers = Provisioner(
        template, clients=lambda _: None, stack_name="S", region="us-east-1"
    ).providers
    return [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function" and logical_id not in providers
    ]


def test_local_up_in_a_subprocess_prints_ready_and_stops_on_sigterm(
    template: dict[str, Any], tmp_path: Path
) -> None:
    template_file = tmp_path / "template.json"
    template_file.write_text(json.dumps(template))
    process = subprocess.Popen(
        [str(PIXFLARE), "--json", "local", "up", "--port", "0", "--template", str(template_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "POWERTOOLS_METRICS_DISABLED": "true"},
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "ready" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(SETTLE_DEADLINE_SECONDS), "".join(lines)
        endpoint = next(line for line in lines if "ready" in line).split()[-1]
        # The HTTP API's URL is printed on the line after `ready`, and published
        api_line = wait_until(
            lambda: next((line for line in lines if line.startswith("api: ")), None),
            "the api line",
        )
        assert lines.index(api_line) == lines.index(f"ready: {endpoint}\n") + 1
        api_url = api_line.split()[-1]
        assert outputs_of(endpoint)["ApiUrl"].rstrip("/") == api_url
        # The stack answers on its endpoint with the template's outputs
        outputs = outputs_of(endpoint)
        assert {"ImagesBucketName", "VariantQueueUrl"} <= set(outputs)
        # And an upload is processed by the variant function, whose REPORT line is logged
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(samples.photo_jpeg(200, 150))
        code, _, err = cli(
            "--endpoint", endpoint, "upload", str(photo), "--owner", "erin", "--album", "a",
            "--wait", str(SETTLE_DEADLINE_SECONDS),
        )  # fmt: skip
        assert code == 0, err
        wait_until(lambda: any(variant_report(line) for line in lines), "a REPORT line")
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
    # Then stdout holds one document: each function's REPORT figures
    report = json.loads(out)
    assert report["apiUrl"] == api_url
    functions = report["functions"]
    assert len(functions) == len(functions_run_locally(template))
    variant = next(v for name, v in functions.items() if "Variant" in name)
    assert variant["memorySizeMb"] == 2048
    assert variant["invocations"] >= 1 and variant["coldStarts"] >= 1
    assert variant["initDurationMs"]["median"] > 0
    assert 0 < variant["maxMemoryUsedMb"] < 2048
    # (The ingest function logs first: S3's test event when the notification is set.)
    report_line = next(line for line in lines if variant_report(line))
    assert "Billed Duration:" in report_line and "Memory Size: 2048 MB" in report_line
