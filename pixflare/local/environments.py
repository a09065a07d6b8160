"""Lambda execution environments on this machine: one CPython 3.12 process each.

Each environment is a child process running the real Runtime Interface Client
(awslambdaric) against a Runtime API we serve on 127.0.0.1 (pixflare.local.runtime_api),
with Lambda's sys.path, environment variables, timeout and memory limit. A
:class:`FunctionEnvironments` keeps a pool of warm environments for one function:
an invocation takes an idle one, or starts a new one (a cold start).

Differences from AWS worth knowing: memory is watched (peak RSS, polled), not
enforced by a cgroup, so a spike shorter than a poll is caught only when the
response arrives; an init that outlasts Lambda's 10 s init limit is not restarted
but simply goes on, counted against the function timeout from that point.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from layers import build
from pixflare.local.runtime_api import InitError, Outcome, PendingInvocation, RuntimeAPI

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit on the init phase of an on-demand function
WATCH_INTERVAL_SECONDS = 0.02  # how often a running invocation's memory is read
KILL_WAIT_SECONDS = 5.0
READER_JOIN_SECONDS = 1.0
VERSION = "$LATEST"
MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's limit on a synchronous invocation's payload

# Set by Lambda itself; a function's own variables cannot replace them.
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_EXECUTION_ENV",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "TZ",
        "LANG",
        "PATH",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
    }
)


def find_python312() -> Path:
    """A CPython 3.12 interpreter (never a virtualenv's) to run the functions with; the
    one the artifacts were compiled with (layers.build, PIXFLARE_LAMBDA_PYTHON wins)."""
    return Path(build.python312())


@dataclass(frozen=True)
class FunctionImage:
    """What one function's execution environments run."""

    python: Path  # a CPython 3.12 interpreter, not a virtualenv's (like /var/lang/bin/python3.12)
    task_root: Path  # the code asset dir (like /var/task)
    opt_dir: Path  # the layers merged into one dir (like /opt); holds python/ (may be empty)
    runtime_dir: Path  # holds awslambdaric and its deps (like /var/runtime)


def billed_ms(duration_ms: float) -> int:
    """Lambda bills each millisecond begun (of the duration as shown), at least 1 ms."""
    return max(1, math.ceil(round(duration_ms, 2)))


@dataclass
class Report:
    """The figures of Lambda's REPORT line for one invocation."""

    request_id: str
    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None = None
    status: str | None = None  # "timeout" or "error" when the runtime did not answer
    error_type: str | None = None  # with status "error", e.g. Runtime.OutOfMemory

    def line(self) -> str:
        text = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_duration_ms} ms\t"
            f"Memory Size: {self.memory_size_mb} MB\tMax Memory Used: {self.max_memory_used_mb} MB"
        )
        if self.init_duration_ms is not None:
            text += f"\tInit Duration: {self.init_duration_ms:.2f} ms"
        if self.status is not None:
            text += f"\tStatus: {self.status}"
            if self.error_type is not None:
                text += f"\tError Type: {self.error_type}"
        return text


@dataclass
class Invocation:
    """One invocation's result; what pollers and the scheduler act on."""

    ok: bool
    response: Any = None
    error: str | None = None
    timed_out: bool = False
    seconds: float = 0.0
    report: Report | None = None
    error_type: str | None = None
    out_of_memory: bool = False
    request_id: str | None = None
    cold_start: bool = False
    pid: int | None = None
    error_payload: Any = None  # the runtime's errorMessage/errorType/stackTrace document


@dataclass
class EnvironmentStats:
    invocations: int = 0
    cold_starts: int = 0
    init_durations_ms: list[float] = field(default_factory=list)
    durations_ms: list[float] = field(default_factory=list)
    max_memory_used_mb: int = 0
    timeouts: int = 0
    out_of_memory_kills: int = 0
    errors: int = 0


def _peak_rss_kb(pid: int) -> int | None:
    """VmHWM (peak resident set) of a live process, in kB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _mb(kb: int) -> int:
    return math.ceil(kb / 1024)


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _trace_id() -> str:
    return (
        f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
        f"Parent={uuid.uuid4().hex[:16]};Sampled=0"
    )


def _log_stream_name() -> str:
    return f"{datetime.now(UTC):%Y/%m/%d}/[{VERSION}]{uuid.uuid4().hex}"


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


class _Environment:
    """One execution environment: a child process and its own Runtime API server."""

    def __init__(self, owner: FunctionEnvironments) -> None:
        self.owner = owner
        self.api = RuntimeAPI(on_handed=self._started)
        self.invocations = 0
        image = owner.image
        command = [
            str(image.python),
            "-I",  # isolated: no PYTHON* variables, no user site, no script dir on sys.path
            "-S",  # no site module: no site-packages of whatever interpreter this is
            "-B",  # never write .pyc files into the artifacts
            str(BOOTSTRAP),
            owner.handler,
            str(image.opt_dir),
        ]
        self.spawned_at = time.monotonic()
        try:
            self.process = self._spawn(command)
        except BaseException:
            self.api.close()
            raise
        self.pid = self.process.pid
        self._readers = [
            threading.Thread(
                target=self._forward, args=(stream,), name=f"lambda-log-{self.pid}", daemon=True
            )
            for stream in (self.process.stdout, self.process.stderr)
            if stream is not None
        ]
        for reader in self._readers:
            reader.start()

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603  (our interpreter and bootstrap, no shell)
            command,
            cwd=self.owner.image.task_root,
            env=self.owner.process_environment(self.api.address),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            # Its own session: a Ctrl-C meant for the stack does not reach the function.
            start_new_session=True,
        )

    def _forward(self, stream: IO[bytes]) -> None:
        """Pass the child's output on line by line, so a full pipe never blocks it."""
        with stream:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                # The RIC joins a multi-line error record with \r (one CloudWatch event).
                for line in text.split("\r"):
                    self.owner.say(line)

    def _started(self, invocation: PendingInvocation) -> None:
        self.owner.say(f"START RequestId: {invocation.request_id} Version: {VERSION}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self.api.closed

    def peak_kb(self) -> int | None:
        return _peak_rss_kb(self.pid)

    def send_kill(self) -> None:
        """SIGKILL the process and what it started (its own process group), as Lambda
        does; returns at once."""
        if self.process.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                self.process.kill()

    def kill(self) -> None:
        """SIGKILL the process, wait for it, then stop its Runtime API; bounded."""
        self.send_kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(KILL_WAIT_SECONDS)
        self.api.close()
        for reader in self._readers:
            reader.join(READER_JOIN_SECONDS)

    def exit_description(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"signal: {signal.Signals(-code).name[3:].lower()}"
        return f"exit status {code}"


class FunctionEnvironments:
    """The execution environments of one function: a pool of warm processes."""

    def __init__(
        self,
        *,
        name: str,
        arn: str,
        handler: str,
        timeout_seconds: int,
        memory_mb: int,
        image: FunctionImage,
        environment: Mapping[str, str],
        region: str,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.arn = arn
        self.handler = handler
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.image = image
        self.environment = dict(environment)
        self.region = region
        self.log = log
        self.stats = EnvironmentStats()
        self._lock = threading.Lock()
        self._idle: list[_Environment] = []
        self._all: set[_Environment] = set()
        self._closed = False

    # -- the process's world -------------------------------------------------------
    def process_environment(self, runtime_api: str) -> dict[str, str]:
        """Exactly what Lambda gives a python3.12 function: its own variables plus
        Lambda's, nothing from this process's environment."""
        image = self.image
        python_prefix = image.python.parent.parent
        lambda_variables = {
            "_HANDLER": self.handler,
            "LAMBDA_TASK_ROOT": str(image.task_root),
            "LAMBDA_RUNTIME_DIR": str(image.runtime_dir),
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_seconds),
            "AWS_LAMBDA_FUNCTION_VERSION": VERSION,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": _log_stream_name(),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": f"{image.python.parent}:/usr/local/bin:/usr/bin:/bin:{image.opt_dir}/bin",
            # Lambda's order, with /var/lang, /var/runtime, /var/task and /opt mapped here.
            "LD_LIBRARY_PATH": ":".join(
                [
                    str(python_prefix / "lib"),
                    "/lib64",
                    "/usr/lib64",
                    str(image.runtime_dir),
                    str(image.runtime_dir / "lib"),
                    str(image.task_root),
                    str(image.task_root / "lib"),
                    str(image.opt_dir / "lib"),
                ]
            ),
            # Lambda sets it; -I makes the interpreter ignore it (the bootstrap sets sys.path).
            "PYTHONPATH": str(image.runtime_dir),
        }
        own = {k: v for k, v in self.environment.items() if k not in RESERVED_VARIABLES}
        return {**own, **lambda_variables}

    def say(self, line: str) -> None:
        if self.log is not None:
            self.log(f"[{self.name}] {line}")

    # -- pool ----------------------------------------------------------------------
    def _take(self) -> tuple[_Environment | None, str | None]:
        """An idle live environment, or a new one (None and the reason when it cannot start)."""
        with self._lock:
            if self._closed:
                return None, "the function's environments are closed"
            while self._idle:
                environment = self._idle.pop()
                if environment.alive:
                    return environment, None
                self._all.discard(environment)
        try:
            environment = _Environment(self)
        except OSError as err:
            return None, f"cannot start {self.image.python}: {err}"
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._all.add(environment)
        if closed:
            environment.kill()
            return None, "the function's environments are closed"
        return environment, None

    def _give_back(self, environment: _Environment, keep: bool) -> None:
        with self._lock:
            if keep and not self._closed and environment.alive:
                self._idle.append(environment)
                return
            self._all.discard(environment)
        environment.kill()

    def close(self) -> None:
        """Kill every process and stop every Runtime API server; idempotent. All at once:
        each Runtime API takes up to its poll interval to stop, so one after another
        made a stop with a dozen warm environments take over a second."""
        with self._lock:
            self._closed = True
            everything = list(self._all)
            self._all.clear()
            self._idle.clear()
        for environment in everything:
            environment.send_kill()
        reapers = [
            threading.Thread(target=environment.kill, name=f"reap-{environment.pid}", daemon=True)
            for environment in everything
        ]
        for reaper in reapers:
            reaper.start()
        for reaper in reapers:
            reaper.join(KILL_WAIT_SECONDS + READER_JOIN_SECONDS * 2 + 2)

    def __enter__(self) -> FunctionEnvironments:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- invoking ------------------------------------------------------------------
    def invoke(self, event: Any) -> Invocation:
        """Run one event in an execution environment; blocks until it is done."""
        started = time.monotonic()
        try:
            body = json.dumps(event).encode()
        except (TypeError, ValueError) as err:
            return Invocation(
                ok=False, error=f"event is not JSON: {err}", error_type="InvalidRequestContent"
            )
        if len(body) > MAX_EVENT_BYTES:
            return Invocation(
                ok=False,
                error=f"{len(body)} byte payload is over the {MAX_EVENT_BYTES} byte limit",
                error_type="RequestTooLargeException",
            )
        environment, reason = self._take()
        if environment is None:
            return Invocation(ok=False, error=reason, error_type="Runtime.Unavailable")
        keep = False
        try:
            result, keep = self._run(environment, body)
        finally:
            self._give_back(environment, keep)
        result.seconds = time.monotonic() - started
        self._record(result)
        return result

    def _run(self, environment: _Environment, body: bytes) -> tuple[Invocation, bool]:
        """The invocation's result, and whether the environment may serve another."""
        cold = environment.invocations == 0
        environment.invocations += 1
        limit_kb = self.memory_mb * 1024
        invocation = PendingInvocation(
            request_id=str(uuid.uuid4()),
            body=body,
            timeout_seconds=self.timeout_seconds,
            function_arn=self.arn,
            trace_id=_trace_id(),
        )
        api = environment.api
        api.submit(invocation)
        init_ends = environment.spawned_at + INIT_TIMEOUT_SECONDS
        outcome: Outcome | None = None
        init_error: InitError | None = None
        failure: tuple[str, str] | None = None  # (error_type, error) the platform reports
        timed_out = out_of_memory = False
        peak_kb = 0
        while True:
            with api.cond:
                api.cond.wait_for(
                    lambda: invocation.outcome is not None or api.init_error is not None,
                    WATCH_INTERVAL_SECONDS,
                )
                outcome, init_error = invocation.outcome, api.init_error
            peak_kb = max(peak_kb, environment.peak_kb() or 0)
            if peak_kb > limit_kb:
                # Also after an answer: a spike between two polls still counts.
                out_of_memory = True
                failure = ("Runtime.OutOfMemory", "Runtime exited with error: signal: killed")
                break
            if outcome is not None or init_error is not None:
                break
            if environment.process.poll() is not None:
                with api.cond:  # it may have posted just before exiting
                    outcome, init_error = invocation.outcome, api.init_error
                if outcome is None and init_error is None:
                    description = environment.exit_description()
                    failure = ("Runtime.ExitError", f"Runtime exited with error: {description}")
                break
            handed_at = invocation.handed_at
            # A slow init runs on past Lambda's 10 s init limit into the function timeout.
            ends = init_ends if handed_at is None else handed_at
            timed_out = time.monotonic() >= ends + self.timeout_seconds
            if timed_out:
                error = f"Task timed out after {self.timeout_seconds:.2f} seconds"
                failure = ("Sandbox.Timedout", error)
                break
        ended = time.monotonic()
        api.finish()
        if failure is not None:
            environment.kill()

        handed_at = invocation.handed_at
        first_next = api.first_next_at
        init_ms: float | None = None
        if cold:
            init_end = first_next
            if init_end is None and init_error is not None:
                init_end = init_error.at
            if init_end is not None:
                init_ms = (init_end - environment.spawned_at) * 1000
        if handed_at is not None:
            answered = outcome.at if outcome is not None and failure is None else ended
            duration_ms = (answered - handed_at) * 1000
        else:
            duration_ms = 0.0
        max_used = self.memory_mb if out_of_memory else _mb(peak_kb)
        result = Invocation(
            ok=False,
            request_id=invocation.request_id,
            cold_start=cold,
            pid=environment.pid,
        )
        status: str | None = None
        if init_error is not None:
            self.say(
                f"INIT_REPORT Init Duration: {init_ms or 0.0:.2f} ms\tPhase: init\t"
                f"Status: error\tError Type: {init_error.error_type}"
            )
        if handed_at is None:
            # Never handed over (init failed or hung), yet Lambda still frames the request.
            self.say(f"START RequestId: {invocation.request_id} Version: {VERSION}")
        if failure is not None:
            result.error_type, result.error = failure
            result.timed_out, result.out_of_memory = timed_out, out_of_memory
            status = "timeout" if timed_out else "error"
            if timed_out:
                self.say(f"{_timestamp()} {invocation.request_id} {result.error}")
            else:
                self.say(f"{_timestamp()} {invocation.request_id} Error: {result.error}")
        elif init_error is not None:
            payload = _decode(init_error.body)
            result.error_payload = payload
            result.error_type = init_error.error_type
            text = payload.get("errorMessage") if isinstance(payload, dict) else payload
            result.error = f"{init_error.error_type}: {text}"
            status = "error"
        elif outcome is not None and outcome.kind == "error":
            payload = _decode(outcome.body)
            result.error_payload = payload
            error_type = outcome.error_type
            message: Any = payload
            if isinstance(payload, dict):
                error_type = payload.get("errorType") or error_type
                message = payload.get("errorMessage", "")
            result.error_type = error_type or "Unhandled"
            result.error = f"{result.error_type}: {message}"
        elif outcome is not None:
            result.ok = True
            result.response = _decode(outcome.body)
        report = Report(
            request_id=invocation.request_id,
            duration_ms=duration_ms,
            billed_duration_ms=billed_ms(duration_ms),
            memory_size_mb=self.memory_mb,
            max_memory_used_mb=max_used,
            init_duration_ms=init_ms,
            status=status,
            error_type=result.error_type if status == "error" else None,
        )
        result.report = report
        self.say(f"END RequestId: {invocation.request_id}")
        self.say(report.line())
        # A function error leaves the runtime alive and polling: the environment stays warm.
        keep = failure is None and init_error is None
        return result, keep

    def _record(self, result: Invocation) -> None:
        with self._lock:
            stats = self.stats
            stats.invocations += 1
            if result.cold_start:
                stats.cold_starts += 1
            report = result.report
            if report is not None:
                if report.init_duration_ms is not None:
                    stats.init_durations_ms.append(report.init_duration_ms)
                stats.durations_ms.append(report.duration_ms)
                stats.max_memory_used_mb = max(stats.max_memory_used_mb, report.max_memory_used_mb)
            stats.timeouts += result.timed_out
            stats.out_of_memory_kills += result.out_of_memory
            stats.errors += not result.ok
