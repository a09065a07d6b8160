"""`pixflare demo`: the whole system on this machine, every pipeline exercised once.

Starts the embedded stack in-process and drives it through the `pixflare`
commands themselves: sample images -> variants (a table of what was made), a
backup to a second S3-compatible endpoint (a moto server in a child process), a
custom domain verified against a DNS server on loopback, the three daily jobs,
and a poison message that reaches the DLQ and is redriven. Prints one line per
pipeline (ok / FAILED / not available yet) and exits 0 only if all it ran worked.
Its stack stops when it ends (it says so, and how to start one that stays up).

With --json, everything it prints otherwise goes to stderr, and stdout gets one JSON
document at the end: :func:`summary_document`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from lambdas.shared.clock import iso
from pixflare.context import CommandContext, CommandError
from pixflare.local import samples
from pixflare.local.aws_proxy import AwsFaultProxy
from pixflare.local.cron import ScheduleError
from pixflare.local.dns import LocalDnsServer
from pixflare.local.s3_server import MotoServerProcess
from pixflare.local.stack import LocalStack, LocalStackError
from pixflare.local.template import TemplateError

WAIT_SECONDS = 30
DEMO_OWNER = "demo"
BACKUP_OWNER = "dana"
DOMAIN = "photos.example.test"
FALLBACK_CNAME = "cdn.pixflare.test"
# Demo-only settings: retries and domain re-checks at once instead of after 30 s.
DEMO_ENV = {
    "PIXFLARE_BACKOFF_BASE_SECONDS": "0",
    "DOMAIN_CHECK_INTERVAL_SECONDS": "1",
    "CUSTOM_DOMAIN_FALLBACK_CNAME": FALLBACK_CNAME,
    "CUSTOM_DOMAIN_PROVIDER": "dns-only",
}


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run every pipeline on the embedded local stack and print a summary",
        description="Starts the embedded stack in this process, uploads sample images, and "
        "exercises variants, backup, custom domains, the daily jobs and the DLQ; then stops "
        "the stack (`pixflare local up` runs one that stays up). Exit 0 only if everything "
        "it ran worked. With --json, the progress lines go to stderr and stdout gets one "
        'JSON document at the end: {"ok", "seconds", "pipelines": [{"pipeline", "status" '
        '(ok | failed | not-available), "detail", "seconds"}], "workerErrors"}. Of the '
        "global options it takes --json only: it runs a stack of its own.",
    )
    demo.add_argument("--template", metavar="FILE", help="a synthesized template (JSON)")
    demo.set_defaults(func=run_demo, global_options=("--json",))


class StepFailed(Exception):  # noqa: N818  (reads as the outcome it reports)
    """A pipeline did not do what it should (the message says what)."""


class NotAvailable(Exception):  # noqa: N818
    """A pipeline whose code has not landed yet."""


@dataclass
class Outcome:
    pipeline: str
    status: str  # ok | FAILED | not available yet
    detail: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "status": JSON_STATUS[self.status],
            "detail": self.detail,
            "seconds": round(self.seconds, 1),
        }


JSON_STATUS = {"ok": "ok", "FAILED": "failed", "not available yet": "not-available"}


class Demo:
    def __init__(
        self,
        ctx: CommandContext,
        stack: LocalStack,
        workdir: Path,
        proxy: AwsFaultProxy,
        out: TextIO,
    ) -> None:
        self.proxy = proxy
        self.ctx = ctx
        # Where the progress goes: stdout, or stderr when stdout is kept for --json.
        self.out = out
        self.stack = stack
        self.workdir = workdir
        self.outcomes: list[Outcome] = []
        # The backed-up image (id, destination client, bucket): the daily jobs delete it.
        self.backed_up: tuple[str, Any, str] | None = None

    # -- helpers -------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def cli(self, *args: str, before: tuple[str, ...] = ()) -> Any:
        """Run a `pixflare` command in this process; its JSON output, or StepFailed."""
        from pixflare.cli import main

        out, err = io.StringIO(), io.StringIO()
        argv = ["--endpoint", self.stack.endpoint, "--json", *before, *args]
        code = main(argv, stdout=out, stderr=err)
        if code != 0:
            reason = err.getvalue().strip().splitlines()
            raise StepFailed(f"pixflare {' '.join(args[:2])}: {reason[-1] if reason else code}")
        text = out.getvalue().strip()
        return json.loads(text) if text else None

    def has_command(self, name: str) -> bool:
        from pixflare.cli import build_parser

        return name in build_parser().subcommands

    def function_available(self, handler_prefix: str) -> bool:
        return any(f.spec.handler.startswith(handler_prefix) for f in self.stack.functions.values())

    def write_sample(self, sample: samples.Sample, name: str | None = None) -> Path:
        path = self.workdir / (name or sample.filename)
        path.write_bytes(sample.data)
        return path

    def wait_for(self, what: str, probe: Callable[[], Any], seconds: float = WAIT_SECONDS) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise StepFailed(f"{what} did not happen within {seconds:g} s")
            time.sleep(0.2)

    def run(self, pipeline: str, step: Callable[[], str]) -> None:
        self.say(f"\n== {pipeline}")
        started = time.monotonic()
        try:
            detail = step()
            status = "ok"
        except NotAvailable as err:
            status, detail = "not available yet", str(err)
        except (StepFailed, CommandError) as err:
            status, detail = "FAILED", str(err)
        except Exception as err:  # a demo reports every failure and carries on
            status, detail = "FAILED", f"{type(err).__name__}: {err}"
        outcome = Outcome(pipeline, status, detail, time.monotonic() - started)
        self.outcomes.append(outcome)
        self.say(f"   {status}: {detail}")

    # -- pipelines -----------------------------------------------------------------
    def variants(self) -> str:
        if not self.function_available("lambdas.variant."):
            raise NotAvailable("lambdas/variant/handler.py has not landed")
        files = [str(self.write_sample(s)) for s in samples.demo_samples()]
        started = time.monotonic()
        statuses = self.cli(
            "upload", *files, "--owner", DEMO_OWNER, "--album", "samples", "--wait",
            str(WAIT_SECONDS),
        )  # fmt: skip
        elapsed = time.monotonic() - started
        statuses = statuses if isinstance(statuses, list) else [statuses]
        self.say(f"   {'image':<12} {'variant':<9} {'size':>11} {'bytes':>9}  time")
        for sample, status in zip(samples.demo_samples(), statuses, strict=True):
            timings = status.get("timings", {})
            took = sum(float(v) for k, v in timings.items() if k.endswith("_ms"))
            for index, (name, info) in enumerate(status.get("variants", {}).items()):
                size = f"{info['width']}x{info['height']}"
                when = f"{took:.0f} ms" if index == 0 and took else ""
                label = sample.filename if index == 0 else ""
                self.say(f"   {label:<12} {name:<9} {size:>11} {info['bytes']:>9}  {when}".rstrip())
        not_ready = [s["filename"] for s in statuses if s["variants_status"] != "ready"]
        if not_ready:
            raise StepFailed(f"variants not ready for {', '.join(not_ready)}")
        incomplete = [s["filename"] for s in statuses if len(s["variants_ready"]) != 8]
        if incomplete:
            raise StepFailed(f"fewer than eight variants for {', '.join(incomplete)}")
        return f"{len(statuses)} images, 8 variants each, all ready {elapsed:.1f} s after upload"

    def backup(self, targets: contextlib.ExitStack) -> str:
        if not (self.has_command("backup") and self.function_available("lambdas.backup.")):
            raise NotAvailable("the backup worker or `pixflare backup` has not landed")
        # Kept running until the end: tonight's backup sync verifies against it too.
        target = targets.enter_context(s3_target())
        bucket = "demo-backups"
        target_client = target_s3(target)
        target_client.create_bucket(Bucket=bucket)
        self.cli(
            "backup", "set", "--owner", BACKUP_OWNER, "--endpoint", target, "--bucket",
            bucket, "--access-key-id", "demo", "--secret-access-key", "demo-secret",
            "--region", "us-east-1", "--path-style",
        )  # fmt: skip
        self.say(f"   destination for {BACKUP_OWNER}: s3://{bucket} at {target}")
        photo = self.write_sample(samples.demo_samples()[0], "backed-up.jpg")
        uploaded = self.cli("upload", str(photo), "--owner", BACKUP_OWNER, "--album", "trip")
        image_id = uploaded["imageId"]

        def synced() -> bool:
            status = self.cli("status", image_id)
            if status["backup_status"] == "failed":
                raise StepFailed(f"backup failed: {status.get('backup')}")
            return bool(status["backup_status"] == "synced")

        self.wait_for("the backup", synced)
        listed = target_client.list_objects_v2(Bucket=bucket).get("Contents", [])
        self.say(f"   {len(listed)} object(s) in the destination bucket")
        self.cli("backup", "verify", image_id)
        restored = self.workdir / "restored.jpg"
        self.cli("backup", "restore", image_id, "--to", str(restored))
        if restored.read_bytes() != photo.read_bytes():
            raise StepFailed("the restored file differs from the upload")
        self.backed_up = (image_id, target_client, bucket)
        return f"image {image_id[:8]} synced, verified and restored byte for byte"

    def domain(self, dns: LocalDnsServer) -> str:
        if not (self.has_command("domain") and self.function_available("lambdas.domain.")):
            raise NotAvailable("the domain worker or `pixflare domain` has not landed")
        added = self.cli("domain", "add", DOMAIN, "--owner", DEMO_OWNER)
        records = added.get("records", [])
        for record in records:
            dns.set(record["name"], record["type"], record["value"])
            self.say(f"   DNS {record['type']:<5} {record['name']} -> {record['value']}")

        def active() -> dict[str, Any] | None:
            status = self.cli("domain", "status", DOMAIN)
            if status["status"] in ("failed", "blocked"):
                raise StepFailed(f"{DOMAIN} is {status['status']}: {status.get('last_error')}")
            return status if status["status"] == "active" else None

        status = self.wait_for(f"{DOMAIN} becoming active", active)
        return f"{DOMAIN} active after {status['checks']} check(s) against {dns.nameserver}"

    def daily_jobs(self) -> str:
        if not self.has_command("cron"):
            raise NotAvailable("`pixflare cron` has not landed")
        # As the schedules would: views happen today, tonight's jobs run after midnight UTC
        # and analytics rolls up the day that just ended.
        today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        tonight = (today + timedelta(days=1)).replace(hour=2)
        counting = self.has_command("views") and self.has_command("stats")
        if counting:
            gif = self.write_sample(samples.demo_samples()[3], "viewed.gif")
            image = self.cli("upload", str(gif), "--owner", DEMO_OWNER, "--album", "views")
            self.cli("views", "record", image["imageId"], "--count", "3", "--at", iso(today))
        for job in ("cleanup", "analytics", "backup-sync"):
            report = self.cli("cron", "run", job, "--now", iso(tonight))
            counts = ", ".join(f"{k} {v}" for k, v in sorted(report.get("counts", {}).items()))
            self.say(f"   {job:<12} {'done' if report.get('done') else 'NOT DONE'}  {counts}")
            if not report.get("done"):
                raise StepFailed(f"{job} did not finish")
            errors = {k: v for k, v in report.get("counts", {}).items() if "error" in k and v}
            if errors:
                raise StepFailed(f"{job} reported {errors}")
        if counting:
            stats = self.cli("stats", DEMO_OWNER, "--day", today.date().isoformat())
            self.say(f"   stats for {DEMO_OWNER} on {today.date()}: {stats.get('views')} view(s)")
            if stats.get("views") != 3:
                raise StepFailed(f"analytics rolled up {stats.get('views')} views, expected 3")
        purged = self.purge_a_month_later(tonight) if self.backed_up else ""
        views = " (3 views rolled up)" if counting else ""
        return f"cleanup, analytics{views} and backup-sync ran to completion{purged}"

    def purge_a_month_later(self, tonight: datetime) -> str:
        """Delete the backed-up image, run cleanup a month later: every copy is gone."""
        assert self.backed_up is not None
        image_id, target_client, bucket = self.backed_up
        status = self.cli("status", image_id)
        prefix = status["original"]["key"].rsplit("/", 1)[0] + "/"
        self.cli("delete", image_id)
        later = tonight + timedelta(days=31)
        report = self.cli("cron", "run", "cleanup", "--now", iso(later))
        expired = report.get("counts", {}).get("expired_images", 0)
        self.say(f"   deleted {image_id[:8]}; cleanup on {later.date()}: {expired} expired")
        listed = self.stack.client("s3").list_objects_v2(Bucket=status["bucket"], Prefix=prefix)
        if listed.get("KeyCount", 0):
            raise StepFailed(f"{listed['KeyCount']} object(s) left under {prefix}")

        def backup_removed() -> bool:
            remote = target_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
            return remote == 0

        self.wait_for("the backup copy being removed", backup_removed)
        self.say(f"   no objects left under {prefix}, backup copy removed")
        return "; a deleted image purged a month later, with its backup"

    def dlq(self) -> str:
        if not self.function_available("lambdas.variant."):
            raise NotAvailable("lambdas/variant/handler.py has not landed")
        photo = self.write_sample(samples.demo_samples()[1], "poison.png")
        key = f"{DEMO_OWNER}/outage/poison.png/original"
        with self.proxy.faults(ObjectOutage(key)):
            uploaded = self.cli("upload", str(photo), "--owner", DEMO_OWNER, "--album", "outage")
            image_id = uploaded["imageId"]
            self.say(f"   S3 reads of {key} fail (simulated outage)")

            # Both functions that read the original fail: the variant job, and the
            # ingest of the S3 event its upload caused (the upload command ingested it
            # itself, so the image is recorded; the event's retries still hit the outage).
            def in_dlqs() -> bool:
                depths = {q["queue"]: q["depth"] for q in self.cli("dlq", "list")}
                return all(depths.get(name, 0) >= 1 for name in ("variant", "ingest"))

            self.wait_for("the jobs reaching their DLQs", in_dlqs)
        failures = self.proxy.injected["s3.GetObject"] + self.proxy.injected["s3.HeadObject"]
        self.say(f"   in the variant and ingest DLQs after {failures} failed reads; outage over")
        for name in ("variant", "ingest"):
            redriven = self.cli("dlq", "redrive", name)
            moved = redriven.get("moved", "all")
            self.say(f"   redrive {name}: {moved} message(s) back ({redriven['method']})")

        def ready() -> bool:
            return bool(self.cli("status", image_id)["variants_status"] == "ready")

        self.wait_for("the redriven job", ready)
        return f"poison job failed {failures} reads, reached the DLQs, was redriven and finished"

    def summary(self) -> int:
        self.say("\n== summary")
        for outcome in self.outcomes:
            self.say(f"   {outcome.pipeline:<12} {outcome.status:<18} {outcome.seconds:5.1f} s")
        failed = [o for o in self.outcomes if o.status == "FAILED"]
        return 1 if failed else 0


def summary_document(outcomes: list[Outcome], seconds: float, worker_errors: int) -> dict[str, Any]:
    """What `pixflare demo --json` prints: ``ok`` is true when no pipeline failed (the
    exit status is 0), a pipeline whose code has not landed is ``not-available``."""
    return {
        "ok": not any(o.status == "FAILED" for o in outcomes),
        "seconds": round(seconds, 1),
        "pipelines": [o.to_dict() for o in outcomes],
        "workerErrors": worker_errors,
    }


STOPPED_NOTE = (
    "its local stack has stopped, and what it held is gone; for one that stays up, run "
    "`pixflare local up` in another terminal (it prints the AWS_ENDPOINT_URL to export)"
)


@contextlib.contextmanager
def s3_target() -> Iterator[str]:
    """A second, separate S3-compatible endpoint (moto in a child process)."""
    server = MotoServerProcess()
    try:
        endpoint = server.start()
    except RuntimeError as err:
        raise StepFailed(str(err)) from None
    try:
        yield endpoint
    finally:
        server.stop()


def target_s3(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo-secret",  # noqa: S106  (moto's, not a real secret)
    )


@dataclass
class ObjectOutage:
    """Every S3 read of one object by the functions fails with a 500, as in an outage
    of that key (a fault rule for the proxy between the functions and the stack)."""

    key: str
    kind: tuple[str, int, str] = ("InternalError", 500, "simulated outage")

    def matches(self, service: str, operation: str) -> bool:
        return service == "s3" and operation in ("GetObject", "HeadObject")

    def decide(self, name: str, params: dict[str, Any]) -> bool:
        return str(params.get("url_path", "")).endswith(self.key)


@contextlib.contextmanager
def process_env(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(args: argparse.Namespace, ctx: CommandContext) -> int:
    from pixflare.commands.local import load_template

    template = load_template(args.template) if args.template else None
    started = time.monotonic()
    # With --json, stdout is kept for the one document written at the end.
    out = ctx.stderr if ctx.json_output else ctx.stdout
    with (
        tempfile.TemporaryDirectory(prefix="pixflare-demo-") as tmp,
        LocalDnsServer() as dns,
        contextlib.ExitStack() as targets,
        # The functions reach the stack through it, so the DLQ step can fail their reads.
        AwsFaultProxy() as proxy,
    ):
        workdir = Path(tmp)
        demo_env = {**DEMO_ENV, "PIXFLARE_DNS_NAMESERVERS": dns.nameserver}
        # Shell settings win, except the resolver: the demo's domain lives in its own DNS.
        env = {**DEMO_ENV, **os.environ, "PIXFLARE_DNS_NAMESERVERS": dns.nameserver}
        log_file = workdir / "functions.jsonl"
        out.write("starting the local stack (synthesizing the CDK app if needed)...\n")
        out.flush()
        stack = LocalStack(
            port=0,
            template=template,
            env=env,
            log_file=log_file,
            out=out,
            function_endpoint=proxy.endpoint,
        )
        try:
            stack.start()
            proxy.upstream = stack.endpoint
        except (LocalStackError, TemplateError, ScheduleError) as err:
            raise CommandError(f"the local stack did not start: {err}") from None
        try:
            with process_env({k: env[k] for k in demo_env}):
                demo = Demo(ctx, stack, workdir, proxy, out)
                demo.run("variants", demo.variants)
                demo.run("backup", lambda: demo.backup(targets))
                demo.run("domain", lambda: demo.domain(dns))
                demo.run("daily jobs", demo.daily_jobs)
                demo.run("dlq", demo.dlq)
                code = demo.summary()
                if stack.errors:
                    out.write(f"   worker errors: {len(stack.errors)} (see above)\n")
        finally:
            stack.stop()
        seconds = time.monotonic() - started
        out.write(f"\ndemo finished in {seconds:.1f} s; {STOPPED_NOTE}\n")
        out.flush()
    if ctx.json_output:
        ctx.emit(summary_document(demo.outcomes, seconds, len(stack.errors)))
    return code
