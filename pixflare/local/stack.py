"""The embedded local stack: moto's server on loopback, the template's resources, and
the template's functions behind their event source mappings and schedules, each run
from its deployment artifacts (code asset + layers) in CPython 3.12 processes of its
own under the Lambda Runtime Interface Client, as Lambda runs it.

    with LocalStack(port=0) as stack:
        print(stack.endpoint)          # http://127.0.0.1:PORT
        stack.outputs["VariantQueueUrl"]

The template's HTTP API, if any, is served on another loopback port
(``stack.api_url``, pixflare.local.http_api), payload format 2.0 events through the
API function's execution environments, with the page at ``/``.

State lives in memory and starts empty each time. The stack publishes the outputs
of its template as a JSON document in a well-known bucket on the same endpoint
(``s3://pixflare-local-stack/stacks/{name}/outputs.json``), so `pixflare --endpoint
URL ...` finds resource names from the same outputs a deployed stack has.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.request
import warnings
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, TextIO

import boto3
from botocore.config import Config

from lambdas.shared.config import SETTINGS
from lambdas.shared.errors import ConfigError
from layers import build
from pixflare.local.cron import Schedule
from pixflare.local.environments import FunctionImage
from pixflare.local.functions import (
    AccountConcurrency,
    Invokable,
    LocalFunction,
    function_environment,
)
from pixflare.local.http_api import HttpApiServer
from pixflare.local.pollers import QueuePoller
from pixflare.local.scheduler import RuleScheduler, ScheduledRun, parse_rule_schedule
from pixflare.local.synth import SynthError, synthesize_template
from pixflare.local.template import CREATED_TYPES, Provisioner, RuleSpec
from pixflare.resolve import OUTPUTS_BUCKET, RUNTIME_SETTINGS_OUTPUT, outputs_key

DEFAULT_PORT = 4566
DEFAULT_REGION = "us-east-1"
DEFAULT_STACK_NAME = "PixflareJobs"
STOP_GRACE_SECONDS = 5.0
# Given to every function: it talks to the moto server with dummy credentials.
_DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}


class LocalStackError(RuntimeError):
    """The local stack could not start (the message says why)."""


# The runtime settings the stack may publish: never a secret, never a resource name.
PUBLISHED_SETTINGS = frozenset(
    spec.env for spec in SETTINGS.values() if not spec.resource and not spec.secret
)


def effective_outputs(outputs: Mapping[str, str], stack_env: Mapping[str, str]) -> dict[str, str]:
    """The template's outputs with its RuntimeSettings as the functions run with them: the
    template's values, then the runtime settings of the stack's own environment, which
    win for every function (pixflare.local.functions.function_environment); secrets are
    left out. So `pixflare --endpoint` in a clean shell agrees with the workers."""
    raw = outputs.get(RUNTIME_SETTINGS_OUTPUT)
    try:
        deployed = json.loads(raw) if raw else {}
    except ValueError:
        deployed = None
    if not isinstance(deployed, dict):
        raise LocalStackError(f"the template's {RUNTIME_SETTINGS_OUTPUT} is not a JSON object")
    overrides = {k: v for k, v in stack_env.items() if k in PUBLISHED_SETTINGS}
    if not raw and not overrides:
        return dict(outputs)
    runtime = {
        **{str(k): str(v) for k, v in deployed.items() if k in PUBLISHED_SETTINGS},
        **overrides,
    }
    return {
        **outputs,
        RUNTIME_SETTINGS_OUTPUT: json.dumps(dict(sorted(runtime.items())), separators=(",", ":")),
    }


def default_stack_name() -> str:
    try:
        from infra.config import STACK_NAME
    except ImportError:
        return DEFAULT_STACK_NAME
    return STACK_NAME


def synthesize(context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    try:
        return synthesize_template(context)
    except SynthError as err:
        raise LocalStackError(str(err)) from None


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return round(ordered[middle], 2)
    return round((ordered[middle - 1] + ordered[middle]) / 2, 2)


def function_summary(function: LocalFunction) -> dict[str, Any]:
    stats = function.stats
    return {
        "memorySizeMb": function.spec.memory_mb,
        "timeoutSeconds": function.spec.timeout_seconds,
        "invocations": stats.invocations,
        "coldStarts": stats.cold_starts,
        "initDurationMs": {
            "median": _median(stats.init_durations_ms),
            "max": round(max(stats.init_durations_ms), 2) if stats.init_durations_ms else None,
        },
        "durationMs": {
            "median": _median(stats.durations_ms),
            "max": round(max(stats.durations_ms), 2) if stats.durations_ms else None,
        },
        "maxMemoryUsedMb": stats.max_memory_used_mb,
        "errors": stats.errors,
        "timeouts": stats.timeouts,
        "outOfMemory": stats.out_of_memory_kills,
        "throttles": function.throttles,
    }


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class LocalStack:
    def __init__(
        self,
        port: int = 0,
        template: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        context: Mapping[str, Any] | None = None,
        stack_name: str | None = None,
        region: str = DEFAULT_REGION,
        out: TextIO | None = None,
        log_file: str | Path | None = None,
        run_schedules: bool = True,
        function_endpoint: str | None = None,
        account_concurrency: int | None = None,
        api_port: int = 0,
    ) -> None:
        self.port = port
        # The HTTP API's port on the host (0: a free one).
        self.api_port = api_port
        self.host = host
        self.template = dict(template) if template is not None else None
        # The environment the workers' runtime settings come from (the shell's by default).
        self.env = dict(os.environ if env is None else env)
        self.context = context
        self.stack_name = stack_name or default_stack_name()
        self.region = region
        self.out = out
        self.log_file = Path(log_file) if log_file else None
        self.run_schedules = run_schedules
        # Where the functions send their AWS calls (AWS_ENDPOINT_URL): the stack's own
        # endpoint unless a test puts a proxy in between.
        self.function_endpoint = function_endpoint
        # The account's concurrency limit, shared by every function (None: unlimited
        # here; AWS's default quota is 1,000). Throttled SQS batches are retried until
        # their visibility timeout, then come back (pixflare.local.pollers).
        if account_concurrency is not None and account_concurrency < 1:
            raise LocalStackError("the account concurrency limit must be at least 1")
        self.concurrency = (
            AccountConcurrency(account_concurrency) if account_concurrency is not None else None
        )
        self.endpoint = ""
        self.outputs: dict[str, str] = {}
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: list[QueuePoller] = []
        self.scheduler: RuleScheduler | None = None
        self.not_created: dict[str, int] = {}
        self.errors: list[str] = []
        self.provisioner: Provisioner | None = None
        self._stop = threading.Event()
        self._server: Any = None
        # Each HTTP API's server, by the API's logical id, bound while the template is
        # read (its ApiEndpoint names it) and serving once the functions exist.
        self.http_apis: dict[str, HttpApiServer] = {}
        self._log_stream: IO[str] | None = None
        self._log_lock = threading.Lock()
        self._errors_lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        try:
            self._start_server()
            template = self.template if self.template is not None else synthesize(self.context)
            self._provision(template)
            self._start_runtime()
            self._start_http_apis()
        except BaseException:
            self.stop()
            raise
        if self._backup_private_endpoints_allowed():
            self._say(
                "backup destinations: loopback, private and plain-http endpoints allowed "
                "here (BACKUP_ALLOW_PRIVATE_ENDPOINTS=true; off when deployed)"
            )
        self._say(f"ready: {self.endpoint}")
        if self.api_url:
            self._say(f"api: {self.api_url}")
        # (`pixflare local up` adds how to point the CLI at it: the demo's stack stops.)
        return self

    def _backup_private_endpoints_allowed(self) -> bool:
        return any(
            f.environment.get("BACKUP_ALLOW_PRIVATE_ENDPOINTS", "").lower() == "true"
            for f in self.functions.values()
        )

    def stop(self) -> None:
        """About a second, whatever is running (bench/local_stop.py measures it)."""
        self._stop.set()
        # Kill the execution environments first, every function's at once: an
        # invocation still running fails (its messages stay on the queue), as when
        # Lambda is torn down under it.
        closers = [
            threading.Thread(target=function.close, name=f"close-{function.name}", daemon=True)
            for function in self.functions.values()
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(STOP_GRACE_SECONDS * 2)
        # The batches still running end as their environments die; a poller's long poll
        # in flight is not waited for (pixflare.local.pollers.QueuePoller.join).
        for poller in self.pollers:
            poller.join(STOP_GRACE_SECONDS)
        if self.scheduler is not None:
            self.scheduler.join(STOP_GRACE_SECONDS)
        for api in self.http_apis.values():
            api.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None
        with self._log_lock:
            if self._log_stream is not None:
                self._log_stream.close()
                self._log_stream = None

    # -- parts ---------------------------------------------------------------------
    def _start_server(self) -> None:
        from moto.server import ThreadedMotoServer

        if self.port and not port_is_free(self.host, self.port):
            raise LocalStackError(f"port {self.port} on {self.host} is in use; pass --port N")
        # Request lines and moto's warnings about resources it only half-supports
        # would drown the stack's own output.
        logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self.port = port
        self.endpoint = f"http://{host}:{port}"
        # Backends are process-global: start from nothing, whatever ran before.
        request = urllib.request.Request(  # noqa: S310  (our own loopback URL)
            f"{self.endpoint}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310  (our own loopback URL)
            pass

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=_DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(
                connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
            ),
        )

    @property
    def api_url(self) -> str:
        """The URL the template's HTTP API is served at ("" when it has none)."""
        for server in self.http_apis.values():
            return server.url
        return ""

    def _bind_http_api(self, logical_id: str) -> str:
        """The loopback server for one of the template's HTTP APIs: its ApiEndpoint."""
        if logical_id not in self.http_apis:
            port = 0 if self.http_apis else self.api_port
            if port and not port_is_free(self.host, port):
                raise LocalStackError(f"port {port} on {self.host} is in use; pass --api-port N")
            self.http_apis[logical_id] = HttpApiServer(port)
        return self.http_apis[logical_id].url

    def _provision(self, template: Mapping[str, Any]) -> None:
        provisioner = Provisioner(
            template,
            clients=self.client,
            stack_name=self.stack_name,
            region=self.region,
            api_endpoint=self._bind_http_api,
        )
        self.not_created = dict(sorted(provisioner.not_created().items()))
        if self.not_created:
            listed = ", ".join(f"{kind} x{count}" for kind, count in self.not_created.items())
            self._say(f"not created locally: {listed}")
        provisioner.provision()
        self.provisioner = provisioner
        self.outputs = effective_outputs(provisioner.outputs(), self.env)
        self._publish_outputs()
        created = Counter(p.type for p in provisioner.created.values() if p.type in CREATED_TYPES)
        listed = ", ".join(f"{kind} x{count}" for kind, count in sorted(created.items()))
        self._say(f"created: {listed}")

    def _publish_outputs(self) -> None:
        """The outputs document `pixflare --endpoint` reads (pixflare.resolve), its
        RuntimeSettings the effective ones (:func:`effective_outputs`)."""
        s3 = self.client("s3")
        s3.create_bucket(Bucket=OUTPUTS_BUCKET)
        s3.put_object(
            Bucket=OUTPUTS_BUCKET,
            Key=outputs_key(self.stack_name),
            Body=json.dumps({"StackName": self.stack_name, "Outputs": self.outputs}).encode(),
            ContentType="application/json",
        )

    def _function_images(self) -> dict[str, FunctionImage]:
        """Each function's artifacts, as the template names them: its code asset, and its
        layers rebuilt from the same locks for this machine, merged in the template's
        order; the Runtime Interface Client; a CPython 3.12 interpreter."""
        provisioner = self.provisioner
        assert provisioner is not None
        host = build.host_platform()
        try:
            python = Path(build.python312())
            runtime_dir = build.build_runtime()
            images = {}
            for logical_id, spec in provisioner.functions.items():
                if not spec.code_path or not Path(spec.code_path).is_dir():
                    raise LocalStackError(
                        f"function {spec.name}: its code asset {spec.code_path or '(none)'} is "
                        "not on this machine; synthesize the template here (without --template)"
                    )
                layers = [build.layer_for_platform(Path(p), host) for p in spec.layer_paths]
                images[logical_id] = FunctionImage(
                    python=python,
                    task_root=Path(spec.code_path),
                    opt_dir=build.merge_layers(layers),
                    runtime_dir=runtime_dir,
                )
        except build.BuildError as err:
            raise LocalStackError(str(err)) from None
        return images

    def _lambda_variables(self) -> dict[str, str]:
        """What the local stack adds to every function's environment."""
        return {
            **_DUMMY_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.function_endpoint or self.endpoint,
            # X-Ray and CloudWatch metrics have nothing to talk to here.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": self.env.get("POWERTOOLS_METRICS_DISABLED", "true"),
        }

    def _start_runtime(self) -> None:
        provisioner = self.provisioner
        assert provisioner is not None
        if self.log_file is not None:
            self._log_stream = self.log_file.open("a", encoding="utf-8")
        images = self._function_images()
        for logical_id, spec in provisioner.functions.items():
            try:
                environment = function_environment(
                    spec, self.env, lambda_env=self._lambda_variables()
                )
            except ConfigError as err:
                raise LocalStackError(f"function {spec.name}: {err}") from None
            self.functions[logical_id] = LocalFunction(
                spec,
                image=images[logical_id],
                environment=environment,
                region=self.region,
                log=self._function_log,
                concurrency=self.concurrency,
            )
        sqs = self.client("sqs")
        for mapping in provisioner.mappings:
            function = self.functions[mapping.function]
            if not mapping.enabled:
                continue
            self.pollers.append(
                QueuePoller(
                    mapping,
                    function,
                    sqs=sqs,
                    region=self.region,
                    stop=self._stop,
                    on_error=self._record_error,
                )
            )
        rules: list[tuple[RuleSpec, Schedule, list[tuple[Invokable, str | None]]]] = []
        for rule in provisioner.rules:
            if not rule.schedule_expression:
                self._say(f"rule {rule.logical_id}: no schedule (event pattern), not run locally")
                continue
            schedule = parse_rule_schedule(rule)
            targets: list[tuple[Invokable, str | None]] = [
                (self.functions[t.function], t.input)
                for t in rule.targets
                if t.function is not None
            ]
            if rule.enabled and targets:
                rules.append((rule, schedule, targets))
        if self.concurrency is not None:
            wanted = sum(p.mapping.max_concurrency for p in self.pollers)
            self._say(
                f"account concurrency limit {self.concurrency.limit} "
                f"(the event source mappings can ask for {wanted})"
            )
        for poller in self.pollers:
            poller.start()
            m = poller.mapping
            self._say(
                f"worker {poller.function.name}: batch {m.batch_size}, window "
                f"{m.batching_window_seconds} s, concurrency {m.max_concurrency}, timeout "
                f"{poller.function.spec.timeout_seconds} s, memory "
                f"{poller.function.spec.memory_mb} MB"
                + (", partial batch responses" if m.report_batch_item_failures else "")
            )
        self.scheduler = RuleScheduler(rules, stop=self._stop, on_error=self._record_error)
        if self.run_schedules and rules:
            for rule, at in self.scheduler.next_runs():
                self._say(f"schedule {rule.schedule_expression}: next run {at:%Y-%m-%d %H:%M} UTC")
            self.scheduler.start()

    def _start_http_apis(self) -> None:
        provisioner = self.provisioner
        assert provisioner is not None
        for spec in provisioner.http_apis:
            server = self.http_apis[spec.logical_id]
            server.serve(spec, self.functions)
            functions = sorted({self.functions[r.function].name for r in spec.routes})
            throttle = (
                f", throttled at {spec.throttle.rate_limit:g}/s burst {spec.throttle.burst_limit}"
                if spec.throttle
                else ""
            )
            cors = (
                f", CORS for {', '.join(spec.cors.allow_origins)}"
                if spec.cors and spec.cors.allow_origins
                else ""
            )
            self._say(
                f"http api {spec.name}: {len(spec.routes)} routes to "
                f"{', '.join(functions) or 'no function'}{throttle}{cors}"
            )

    # -- reporting -----------------------------------------------------------------
    def _function_log(self, line: str) -> None:
        """A function's own output and Lambda's START/END/REPORT lines."""
        with self._log_lock:
            if self._log_stream is not None:
                self._log_stream.write(line + "\n")
                self._log_stream.flush()
                return
        self._say(line)

    def function_reports(self) -> dict[str, dict[str, Any]]:
        """Per function, the figures of its REPORT lines so far (for benchmarks)."""
        return {
            function.name: function_summary(function)
            for function in sorted(self.functions.values(), key=lambda f: f.name)
        }

    def _record_error(self, message: str) -> None:
        if self._stop.is_set():
            # Stopping kills the environments: a batch still running fails by design
            # (its messages stay on the queue), which is not an error to report.
            return
        with self._errors_lock:
            self.errors.append(message)
        self._say(f"error: {message}")

    def _say(self, message: str) -> None:
        if self.out is not None:
            self.out.write(message + "\n")
            self.out.flush()

    def run_rule(self, logical_id: str) -> list[ScheduledRun]:
        """Invoke a scheduled rule's targets now, through the same functions and
        environments its schedule uses (also when schedules are not run)."""
        if self.scheduler is None:
            raise LocalStackError("the stack is not running")
        return self.scheduler.fire_now(logical_id)

    def poller_for(self, queue_output: str) -> QueuePoller:
        """The poller consuming the queue named by an output such as ``VariantQueueUrl``."""
        url = self.outputs[queue_output]
        for poller in self.pollers:
            if poller.mapping.queue_url == url:
                return poller
        raise KeyError(f"no worker consumes {queue_output}")
