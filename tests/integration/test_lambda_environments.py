"""Execution environments: each function runs in its own CPython 3.12 process under the
real Runtime Interface Client (awslambdaric), against our Runtime API on 127.0.0.1."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from layers import build
from pixflare.local.environments import (
    FunctionEnvironments,
    FunctionImage,
    Invocation,
    Report,
    billed_ms,
    find_python312,
)
from pixflare.local.functions import LocalFunction
from pixflare.local.pollers import QueuePoller
from pixflare.local.runtime_api import PendingInvocation, RuntimeAPI
from pixflare.local.template import FunctionSpec, MappingSpec

pytestmark = pytest.mark.slow

REGION = "eu-west-1"
ARN = f"arn:aws:lambda:{REGION}:123456789012:function:probe"

PROBE = """
import importlib.util
import os
import sys
import time


def echo(event, context):
    return {
        "event": event,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "sys_path": sys.path,
        "environ": {name: os.environ.get(name) for name in event.get("env", [])},
        "pid": os.getpid(),
        "pytest_importable": importlib.util.find_spec("pytest") is not None,
    }


def fail(event, context):
    raise ValueError("no such image: " + event["imageId"])


def sleep(event, context):
    time.sleep(event["seconds"])
    return {"slept": event["seconds"]}


def crash(event, context):
    print("about to exit")
    os._exit(event["code"])


def sleep_on_first_receive(event, context):
    if event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1":
        time.sleep(30)
    return {"batchItemFailures": []}


def allocate(event, context):
    block = b"x" * (event["mb"] * 1024 * 1024)
    return {"allocated": len(block)}
"""

BROKEN = """
import module_that_is_not_in_the_asset  # fails at init
"""


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def runtime_dir() -> Path:
    """awslambdaric and its dependencies, built from their lock for this machine."""
    return build.build_runtime()


@pytest.fixture(scope="session")
def python312() -> Path:
    return find_python312()


@pytest.fixture
def image(tmp_path: Path, runtime_dir: Path, python312: Path) -> FunctionImage:
    task_root = tmp_path / "task"
    task_root.mkdir()
    (task_root / "probe.py").write_text(textwrap.dedent(PROBE))
    (task_root / "broken.py").write_text(textwrap.dedent(BROKEN))
    opt_dir = tmp_path / "opt"
    (opt_dir / "python").mkdir(parents=True)
    return FunctionImage(
        python=python312, task_root=task_root, opt_dir=opt_dir, runtime_dir=runtime_dir
    )


def eventually_logged(logs: list[str], text: str, seconds: float = 10.0) -> bool:
    """Whether a line containing ``text`` reaches ``logs`` within ``seconds`` (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(text in line for line in logs):
            return True
        time.sleep(0.02)
    return any(text in line for line in logs)


@pytest.fixture
def logs() -> list[str]:
    return []


@pytest.fixture
def function(
    image: FunctionImage, logs: list[str]
) -> Iterator[Callable[..., FunctionEnvironments]]:
    """Builds a function's environments; every one is closed after the test."""
    made: list[FunctionEnvironments] = []
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            logs.append(line)

    def make(
        handler: str, *, timeout: int = 10, memory: int = 128, env: dict[str, str] | None = None
    ) -> FunctionEnvironments:
        environments = FunctionEnvironments(
            name="probe",
            arn=ARN,
            handler=handler,
            timeout_seconds=timeout,
            memory_mb=memory,
            image=image,
            environment={"STAGE": "test", **(env or {})},
            region=REGION,
            log=log,
        )
        made.append(environments)
        return environments

    yield make
    for environments in made:
        environments.close()


def _report_line(logs: list[str], invocation: Invocation) -> str:
    assert invocation.request_id is not None
    lines = [line for line in logs if f"REPORT RequestId: {invocation.request_id}" in line]
    assert len(lines) == 1, logs
    return lines[0]


def test_echo_runs_like_lambda(
    function: Callable[..., FunctionEnvironments],
    image: FunctionImage,
    monkeypatch: pytest.MonkeyPatch,
    logs: list[str],
) -> None:
    # Given a function, and a variable in the stack's own environment only
    monkeypatch.setenv("PIXFLARE_ONLY_IN_THE_SHELL", "leak")
    probe = function("probe.echo", timeout=10, memory=256, env={"_HANDLER": "not.this"})
    wanted = [
        "_HANDLER",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_EXECUTION_ENV",
        "AWS_REGION",
        "LAMBDA_TASK_ROOT",
        "TZ",
        "STAGE",
        "PIXFLARE_ONLY_IN_THE_SHELL",
    ]

    # When it is invoked
    result = probe.invoke({"imageId": "abc", "env": wanted})

    # Then the event round-trips through the runtime and the context counts down
    assert result.ok, result.error
    response = result.response
    assert response["event"] == {"imageId": "abc", "env": wanted}
    assert 0 < response["remaining_ms"] <= 10_000
    assert response["request_id"] == result.request_id
    assert response["arn"] == ARN
    # and sys.path is Lambda's: task root, layers, runtime, then only the stdlib
    path = response["sys_path"]
    opt_site = str(image.opt_dir / "python" / "lib" / "python3.12" / "site-packages")
    assert path[:4] == [
        str(image.task_root),
        opt_site,
        str(image.opt_dir / "python"),
        str(image.runtime_dir),
    ]
    assert [entry for entry in path if "site-packages" in entry] == [opt_site]
    assert response["pytest_importable"] is False  # nothing of the stack's virtualenv
    # and the environment is Lambda's plus the function's own, nothing of ours
    environ = response["environ"]
    assert environ["_HANDLER"] == "probe.echo"
    assert environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert environ["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "10"
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == "probe"
    assert environ["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert environ["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert environ["AWS_REGION"] == REGION
    assert environ["LAMBDA_TASK_ROOT"] == str(image.task_root)
    assert environ["TZ"] == ":UTC"
    assert environ["STAGE"] == "test"
    assert environ["PIXFLARE_ONLY_IN_THE_SHELL"] is None
    # and Lambda's own log lines frame the invocation
    assert f"[probe] START RequestId: {result.request_id} Version: $LATEST" in logs
    assert f"[probe] END RequestId: {result.request_id}" in logs
    assert "Memory Size: 256 MB" in _report_line(logs, result)
    # and no bytecode was written into the artifacts
    assert not list(image.task_root.rglob("*.pyc"))


def test_cold_start_then_warm(
    function: Callable[..., FunctionEnvironments], logs: list[str]
) -> None:
    # Given a function that has not run yet
    probe = function("probe.echo")

    # When it is invoked twice, one after the other
    first = probe.invoke({"n": 1})
    second = probe.invoke({"n": 2})

    # Then the first was a cold start with an Init Duration, the second ran warm
    assert first.ok and second.ok
    assert first.cold_start and not second.cold_start
    assert first.report is not None and first.report.init_duration_ms is not None
    assert first.report.init_duration_ms > 0
    assert "\tInit Duration: " in _report_line(logs, first)
    assert second.report is not None and second.report.init_duration_ms is None
    assert "Init Duration" not in _report_line(logs, second)
    # in the same process
    assert first.pid == second.pid == second.response["pid"]
    assert probe.stats.invocations == 2 and probe.stats.cold_starts == 1
    assert probe.stats.max_memory_used_mb > 0
    print(
        f"\ncold start: init {first.report.init_duration_ms:.1f} ms, "
        f"duration {first.report.duration_ms:.2f} ms; "
        f"warm duration {second.report.duration_ms:.2f} ms; "
        f"max memory {probe.stats.max_memory_used_mb} MB"
    )


def test_function_error_keeps_the_environment(
    function: Callable[..., FunctionEnvironments], logs: list[str]
) -> None:
    # Given a handler that raises
    probe = function("probe.fail")

    # When it is invoked twice
    first = probe.invoke({"imageId": "img-1"})
    second = probe.invoke({"imageId": "img-2"})

    # Then each invocation fails with the runtime's error document
    assert not first.ok and not first.timed_out
    assert first.error_type == "ValueError"
    assert first.error == "ValueError: no such image: img-1"
    assert first.error_payload["stackTrace"]
    # The function's own output is forwarded by reader threads, after the response.
    assert eventually_logged(logs, "[ERROR] ValueError: no such image: img-1")
    # and the environment stayed warm: same process, no second cold start
    assert second.error == "ValueError: no such image: img-2"
    assert second.pid == first.pid and not second.cold_start
    assert probe.stats.errors == 2 and probe.stats.cold_starts == 1


def test_timeout_kills_the_environment(
    function: Callable[..., FunctionEnvironments], logs: list[str]
) -> None:
    # Given a function with a 2 s timeout, warmed up
    probe = function("probe.sleep", timeout=2)
    warm = probe.invoke({"seconds": 0})
    assert warm.ok

    # When an invocation sleeps past its timeout
    result = probe.invoke({"seconds": 30})

    # Then it timed out, in Lambda's words, and its process is gone
    assert not result.ok and result.timed_out
    assert result.error == "Task timed out after 2.00 seconds"
    assert 2 <= result.seconds < 5
    assert result.pid is not None and not _pid_exists(result.pid)
    assert any(
        line.endswith(f"{result.request_id} Task timed out after 2.00 seconds") for line in logs
    )
    assert "Status: timeout" in _report_line(logs, result)
    # and the next invocation starts a fresh environment
    after = probe.invoke({"seconds": 0})
    assert after.ok and after.cold_start and after.pid != result.pid
    assert probe.stats.timeouts == 1


def test_memory_limit_kills_the_environment(
    function: Callable[..., FunctionEnvironments], logs: list[str]
) -> None:
    # Given a function with 128 MB of memory
    probe = function("probe.allocate", memory=128)

    # When an invocation allocates 300 MB
    result = probe.invoke({"mb": 300})

    # Then it fails as out of memory, and its process is gone
    assert not result.ok and result.out_of_memory and not result.timed_out
    assert result.error_type == "Runtime.OutOfMemory"
    assert result.error == "Runtime exited with error: signal: killed"
    assert result.report is not None and result.report.max_memory_used_mb >= 128
    assert "Error Type: Runtime.OutOfMemory" in _report_line(logs, result)
    assert result.pid is not None and not _pid_exists(result.pid)
    # and a small allocation afterwards runs in a fresh environment
    after = probe.invoke({"mb": 10})
    assert after.ok and after.cold_start and after.pid != result.pid
    assert probe.stats.out_of_memory_kills == 1


def test_runtime_exit_fails_the_invocation(
    function: Callable[..., FunctionEnvironments], logs: list[str]
) -> None:
    # Given a handler that ends its own process
    probe = function("probe.crash")

    # When it is invoked
    result = probe.invoke({"code": 3})

    # Then the invocation fails as Lambda reports a runtime that exited
    assert not result.ok and not result.timed_out
    assert result.error_type == "Runtime.ExitError"
    assert result.error == "Runtime exited with error: exit status 3"
    assert "[probe] about to exit" in logs
    # and the next invocation gets a fresh process
    after = probe.invoke({"code": 4})
    assert after.cold_start and after.pid != result.pid


def test_init_error_fails_and_retries_fresh(
    function: Callable[..., FunctionEnvironments], logs: list[str]
) -> None:
    # Given a handler whose module fails to import
    broken = function("broken.handler")

    # When it is invoked twice
    first = broken.invoke({})
    second = broken.invoke({})

    # Then each fails with the runtime's init error, naming the module
    assert not first.ok and not first.timed_out
    assert first.error_type == "Runtime.ImportModuleError"
    assert first.error is not None
    assert "Unable to import module 'broken'" in first.error
    assert "module_that_is_not_in_the_asset" in first.error
    assert first.report is not None and first.report.init_duration_ms is not None
    assert any("INIT_REPORT" in line and "Runtime.ImportModuleError" in line for line in logs)
    # and the second attempt started a new process
    assert second.error_type == "Runtime.ImportModuleError"
    assert second.cold_start and second.pid != first.pid
    assert first.pid is not None and not _pid_exists(first.pid)


def test_concurrent_invocations_get_their_own_environments(
    function: Callable[..., FunctionEnvironments],
) -> None:
    # Given a function
    probe = function("probe.sleep")
    results: list[Invocation] = []
    lock = threading.Lock()

    def run() -> None:
        outcome = probe.invoke({"seconds": 0.5})
        with lock:
            results.append(outcome)

    # When two invocations run at once
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then both succeed, each in its own process
    assert [r.ok for r in results] == [True, True]
    assert results[0].pid != results[1].pid
    pids = [r.pid for r in results]

    # and closing the function ends every process
    probe.close()
    probe.close()  # idempotent
    assert not any(_pid_exists(pid) for pid in pids if pid is not None)
    assert probe.invoke({"seconds": 0}).ok is False


def test_close_ends_a_running_invocation(
    function: Callable[..., FunctionEnvironments], logs: list[str]
) -> None:
    # Given an invocation that has started and would run for 30 s
    probe = function("probe.sleep", timeout=60)
    results: list[Invocation] = []
    runner = threading.Thread(target=lambda: results.append(probe.invoke({"seconds": 30})))
    runner.start()
    waited = time.monotonic() + 10
    while not any("START RequestId" in line for line in logs) and time.monotonic() < waited:
        time.sleep(0.05)

    # When the function's environments are closed
    started = time.monotonic()
    probe.close()
    runner.join(10)

    # Then the invocation ends at once, failed, and its process is gone
    assert time.monotonic() - started < 5
    assert len(results) == 1 and not results[0].ok
    assert results[0].pid is not None and not _pid_exists(results[0].pid)


def test_runtime_api_rejects_an_unknown_request_id() -> None:
    # Given a Runtime API with no invocation in flight
    api = RuntimeAPI()
    try:
        url = f"http://{api.address}/2018-06-01/runtime/invocation/not-a-request/response"
        request = urllib.request.Request(url, data=b"{}", method="POST")

        # When a response is posted for an id it never handed out
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=5)

        # Then it answers 400, as Lambda does
        assert raised.value.code == 400
        assert json.loads(raised.value.read())["errorType"] == "InvalidRequestID"
    finally:
        api.close()


def test_runtime_api_hands_over_an_event_and_takes_the_response() -> None:
    # Given a Runtime API holding an event
    api = RuntimeAPI()
    try:
        api.submit(
            PendingInvocation(
                request_id="req-1",
                body=b'{"a": 1}',
                timeout_seconds=3,
                function_arn=ARN,
                trace_id="Root=1-0-0",
            )
        )
        base = f"http://{api.address}/2018-06-01/runtime"

        # When the runtime asks for the next invocation and answers it
        with urllib.request.urlopen(f"{base}/invocation/next", timeout=5) as answer:
            headers, body = answer.headers, answer.read()
        post = urllib.request.Request(
            f"{base}/invocation/req-1/response", data=b'"done"', method="POST"
        )
        with urllib.request.urlopen(post, timeout=5) as accepted:
            status = accepted.status

        # Then it got Lambda's headers and the response was accepted
        assert body == b'{"a": 1}'
        assert headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
        assert headers["Lambda-Runtime-Invoked-Function-Arn"] == ARN
        assert headers["Lambda-Runtime-Trace-Id"] == "Root=1-0-0"
        assert int(headers["Lambda-Runtime-Deadline-Ms"]) > 0
        assert status == 202
        assert api.pending is not None and api.pending.outcome is not None
        assert api.pending.outcome.body == b'"done"'
    finally:
        api.close()


def test_report_line_is_lambdas_format() -> None:
    # Given the figures of a cold and a warm invocation
    cold = Report(
        request_id="8f5e2f3a-0000-4000-8000-000000000001",
        duration_ms=12.341,
        billed_duration_ms=billed_ms(12.341),
        memory_size_mb=128,
        max_memory_used_mb=45,
        init_duration_ms=456.784,
    )
    warm = Report(
        request_id="id-2",
        duration_ms=3.0,
        billed_duration_ms=billed_ms(3.0),
        memory_size_mb=1024,
        max_memory_used_mb=80,
    )

    # Then the lines read exactly as Lambda writes them
    assert cold.line() == (
        "REPORT RequestId: 8f5e2f3a-0000-4000-8000-000000000001\tDuration: 12.34 ms\t"
        "Billed Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 45 MB\t"
        "Init Duration: 456.78 ms"
    )
    assert warm.line() == (
        "REPORT RequestId: id-2\tDuration: 3.00 ms\tBilled Duration: 3 ms\t"
        "Memory Size: 1024 MB\tMax Memory Used: 80 MB"
    )


@pytest.mark.parametrize(
    ("duration_ms", "billed"),
    [(0.0, 1), (0.2, 1), (1.0, 1), (1.001, 1), (1.01, 2), (12.34, 13), (999.999, 1000)],
)
def test_billed_duration_rounds_up_to_the_millisecond(duration_ms: float, billed: int) -> None:
    assert billed_ms(duration_ms) == billed


def test_a_batch_past_its_timeout_comes_back_and_runs_in_a_fresh_environment(
    image: FunctionImage, logs: list[str]
) -> None:
    from moto import mock_aws

    with mock_aws():
        # Given a queue whose messages come back 2 s after a failed receive
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody='{"v": 1}')
        # And a function with a 1 s timeout that hangs on a message's first receive
        spec = FunctionSpec(
            logical_id="Fn",
            name="probe",
            arn=ARN,
            handler="probe.sleep_on_first_receive",
            timeout_seconds=1,
            memory_mb=128,
            environment={},
        )
        function = LocalFunction(spec, image=image, environment={}, region=REGION, log=logs.append)
        mapping = MappingSpec(
            logical_id="Map",
            function="Fn",
            queue_url=url,
            queue_arn=f"arn:aws:sqs:{REGION}:123456789012:jobs",
            batch_size=1,
            batching_window_seconds=0,
            report_batch_item_failures=True,
            max_concurrency=1,
            enabled=True,
        )
        stop = threading.Event()
        poller = QueuePoller(mapping, function, sqs=sqs, region=REGION, stop=stop)
        try:
            # When the mapping polls until the message is done (bounded)
            poller.start()
            deadline = time.monotonic() + 30
            while poller.stats.deleted < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            poller.join(5)
            function.close()
    # Then the first run was ended at the timeout and its batch failed as a whole
    assert poller.stats.failed_batches == 1
    assert function.stats.timeouts == 1
    assert any("Task timed out after 1.00 seconds" in line for line in logs)
    # And the message came back and was done by a new environment (a second cold start)
    assert poller.stats.deleted == 1
    assert poller.stats.batches == 2
    assert function.stats.cold_starts == 2
    assert len(function.stats.init_durations_ms) == 2
