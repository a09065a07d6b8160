"""The embedded local stack: moto's server on loopback, the template's resources, and
the template's functions running in-process behind their event source mappings
and schedules.

    with LocalStack(port=0) as stack:
        print(stack.endpoint)          # http://127.0.0.1:PORT
        stack.outputs["VariantQueueUrl"]

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

from lambdas.shared import worker as worker_runtime
from lambdas.shared.aws import reset_clients
from lambdas.shared.config import reset_settings
from lambdas.shared.worker import reset_workers
from pixflare.local.cron import Schedule
from pixflare.local.runtime import (
    LocalFunction,
    QueuePoller,
    RuleScheduler,
    parse_rule_schedule,
)
from pixflare.local.synth import SynthError, synthesize_template
from pixflare.local.template import CREATED_TYPES, Provisioner, RuleSpec
from pixflare.resolve import OUTPUTS_BUCKET, outputs_key

DEFAULT_PORT = 4566
DEFAULT_REGION = "us-east-1"
DEFAULT_STACK_NAME = "PixflareJobs"
BACKOFF_VARIABLE = "PIXFLARE_BACKOFF_BASE_SECONDS"
STOP_GRACE_SECONDS = 5.0
# Set for the whole process while the stack runs: workers talk to the moto server with
# dummy credentials; X-Ray and CloudWatch metrics have nothing to talk to here.
_DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}


class LocalStackError(RuntimeError):
    """The local stack could not start (the message says why)."""


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
    ) -> None:
        self.port = port
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
        self._saved_env: dict[str, str | None] = {}
        self._saved_backoff: int | None = None
        self._log_stream: IO[str] | None = None
        self._saved_log_stream: Any = None
        self._errors_lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        try:
            self._start_server()
            self._apply_process_env()
            template = self.template if self.template is not None else synthesize(self.context)
            self._provision(template)
            self._start_runtime()
        except BaseException:
            self.stop()
            raise
        self._say(f"ready: {self.endpoint}")
        self._say(
            f"  export AWS_ENDPOINT_URL={self.endpoint}  "
            f"# then: pixflare upload photo.jpg --owner me --album trip --wait 30"
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        for poller in self.pollers:
            poller.join(STOP_GRACE_SECONDS)
        if self.scheduler is not None:
            self.scheduler.join(STOP_GRACE_SECONDS)
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._restore_process_env()

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

    def _apply_process_env(self) -> None:
        wanted = {
            **_DUMMY_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": self.env.get("POWERTOOLS_METRICS_DISABLED", "true"),
        }
        for name, value in wanted.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        backoff = self.env.get(BACKOFF_VARIABLE)
        if backoff is not None:
            if not backoff.strip().isdigit():
                raise LocalStackError(f"{BACKOFF_VARIABLE} must be a whole number, got {backoff!r}")
            self._saved_backoff = worker_runtime.BACKOFF_BASE_SECONDS
            worker_runtime.BACKOFF_BASE_SECONDS = int(backoff)
        if self.log_file is not None:
            from lambdas.shared.observability import logger

            handler = logger.registered_handler
            if isinstance(handler, logging.StreamHandler):
                self._log_stream = self.log_file.open("a", encoding="utf-8")
                self._saved_log_stream = handler.setStream(self._log_stream)
        reset_clients()
        reset_settings()
        reset_workers()

    def _restore_process_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        if self._saved_backoff is not None:
            worker_runtime.BACKOFF_BASE_SECONDS = self._saved_backoff
            self._saved_backoff = None
        if self._log_stream is not None:
            from lambdas.shared.observability import logger

            handler = logger.registered_handler
            if isinstance(handler, logging.StreamHandler) and self._saved_log_stream is not None:
                handler.setStream(self._saved_log_stream)
            self._log_stream.close()
            self._log_stream = None
        reset_clients()
        reset_settings()
        reset_workers()

    def _provision(self, template: Mapping[str, Any]) -> None:
        provisioner = Provisioner(
            template, clients=self.client, stack_name=self.stack_name, region=self.region
        )
        self.not_created = dict(sorted(provisioner.not_created().items()))
        if self.not_created:
            listed = ", ".join(f"{kind} x{count}" for kind, count in self.not_created.items())
            self._say(f"not created locally: {listed}")
        provisioner.provision()
        self.provisioner = provisioner
        self.outputs = provisioner.outputs()
        self._publish_outputs()
        created = Counter(p.type for p in provisioner.created.values() if p.type in CREATED_TYPES)
        listed = ", ".join(f"{kind} x{count}" for kind, count in sorted(created.items()))
        self._say(f"created: {listed}")

    def _publish_outputs(self) -> None:
        """The outputs document `pixflare --endpoint` reads (pixflare.resolve)."""
        s3 = self.client("s3")
        s3.create_bucket(Bucket=OUTPUTS_BUCKET)
        s3.put_object(
            Bucket=OUTPUTS_BUCKET,
            Key=outputs_key(self.stack_name),
            Body=json.dumps({"StackName": self.stack_name, "Outputs": self.outputs}).encode(),
            ContentType="application/json",
        )

    def _start_runtime(self) -> None:
        provisioner = self.provisioner
        assert provisioner is not None
        for logical_id, spec in provisioner.functions.items():
            function = LocalFunction(spec, self.env)
            self.functions[logical_id] = function
            if function.unavailable:
                self._say(f"function {spec.name}: not available yet: {function.unavailable}")
        sqs = self.client("sqs")
        for mapping in provisioner.mappings:
            function = self.functions[mapping.function]
            if not mapping.enabled or function.unavailable:
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
        rules: list[tuple[RuleSpec, Schedule, list[tuple[LocalFunction, str | None]]]] = []
        for rule in provisioner.rules:
            if not rule.schedule_expression:
                self._say(f"rule {rule.logical_id}: no schedule (event pattern), not run locally")
                continue
            schedule = parse_rule_schedule(rule)
            targets = [
                (self.functions[t.function], t.input)
                for t in rule.targets
                if t.function is not None and not self.functions[t.function].unavailable
            ]
            if rule.enabled and targets:
                rules.append((rule, schedule, targets))
        for poller in self.pollers:
            poller.start()
            m = poller.mapping
            self._say(
                f"worker {poller.function.name}: batch {m.batch_size}, window "
                f"{m.batching_window_seconds} s, concurrency {m.max_concurrency}, timeout "
                f"{poller.function.spec.timeout_seconds} s"
                + (", partial batch responses" if m.report_batch_item_failures else "")
            )
        if self.run_schedules and rules:
            self.scheduler = RuleScheduler(rules, stop=self._stop, on_error=self._record_error)
            for rule, at in self.scheduler.next_runs():
                self._say(f"schedule {rule.schedule_expression}: next run {at:%Y-%m-%d %H:%M} UTC")
            self.scheduler.start()

    # -- reporting -----------------------------------------------------------------
    def _record_error(self, message: str) -> None:
        with self._errors_lock:
            self.errors.append(message)
        self._say(f"error: {message}")

    def _say(self, message: str) -> None:
        if self.out is not None:
            self.out.write(message + "\n")
            self.out.flush()

    def poller_for(self, queue_output: str) -> QueuePoller:
        """The poller consuming the queue named by an output such as ``VariantQueueUrl``."""
        url = self.outputs[queue_output]
        for poller in self.pollers:
            if poller.mapping.queue_url == url:
                return poller
        raise KeyError(f"no worker consumes {queue_output}")
