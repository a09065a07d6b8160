"""Throttling alone on the embedded local stack: does it send good messages to a DLQ?

The four event source mappings can ask for 5 + 5 + 5 + 2 = 17 invocations at once
(ScalingConfig.MaximumConcurrency); a new account's concurrency limit is often 10.
This runs the stack with an account concurrency limit lower than that
(``LocalStack(account_concurrency=N)``, default 6), gives three owners a backup
destination (a second moto server), so each upload feeds two queues (variant and
backup, 5 + 5 batches wanted at once), sends a burst of small uploads (default 200)
with `pixflare upload`, waits (bounded) until both queues are empty, and prints per
queue: messages received, invocation attempts throttled, batches given up after
their visibility timeout (each such receive counts toward maxReceiveCount), and the
DLQ depth. Nothing fails on purpose: every DLQ message would be throttling's doing.

The stack's pollers do what AWS documents for a throttled SQS batch: retry with
backoff until the message's visibility timeout, then drop it back to the queue
(pixflare/local/pollers.py). The queues' visibility timeouts are the template's
(6 x the function timeout), so a batch comes back only if no slot freed for that
long.

Run: ``python bench/throttle.py [UPLOADS] [--account-concurrency N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import OWNERS, cli, queue_depth, write_samples

QUEUES = (
    ("variant", "VariantQueueUrl", ""),
    ("backup", "BackupQueueUrl", ""),
    ("domain", "DomainQueueUrl", ""),
    ("cron", "CronQueueUrl", ""),
)


def set_backups(stack: Any, target: str) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=target,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
    )
    s3.create_bucket(Bucket="throttle-backups")
    for owner in OWNERS:
        code, _, err = cli(
            "--endpoint", stack.endpoint, "backup", "set", "--owner", owner, "--endpoint",
            target, "--bucket", "throttle-backups", "--access-key-id", "bench",
            "--secret-access-key", "bench-secret", "--region", "us-east-1", "--path-style",
        )  # fmt: skip
        if code != 0:
            raise RuntimeError(f"pixflare backup set failed: {err.strip()}")


def dlq_url(sqs: Any, queue_url: str) -> str:
    """The queue's DLQ, from its own redrive policy."""
    policy = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    arn = json.loads(policy["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"]
    return str(sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"])


def wait_empty(stack: Any, outputs: list[str], bound: float) -> tuple[bool, float]:
    sqs = stack.client("sqs")
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < bound:
        quiet = quiet + 1 if all(queue_depth(sqs, stack.outputs[o]) == 0 for o in outputs) else 0
        if quiet >= 3:
            return True, time.monotonic() - started
        time.sleep(0.5)
    return False, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uploads", type=int, nargs="?", default=200)
    parser.add_argument("--account-concurrency", type=int, default=6)
    parser.add_argument("--max-side", type=int, default=96, help="small images")
    parser.add_argument("--settle-seconds", type=float, default=900)
    parser.add_argument("--template", metavar="FILE", help="a synthesized template (JSON)")
    args = parser.parse_args(argv)
    template = None
    if args.template:
        from pixflare.commands.local import load_template

        template = load_template(args.template)
    os.environ.update({"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"})
    from pixflare.local.s3_server import MotoServerProcess
    from pixflare.local.stack import LocalStack

    target = MotoServerProcess()
    with (
        tempfile.TemporaryDirectory(prefix="pixflare-throttle-") as tmp,
        (Path(tmp) / "stdout.txt").open("w") as printed,
        contextlib.redirect_stdout(printed),
        LocalStack(
            port=0,
            template=template,
            log_file=Path(tmp) / "functions.log",
            run_schedules=False,
            account_concurrency=args.account_concurrency,
        ) as stack,
    ):
        try:
            set_backups(stack, target.start())
            files = write_samples(Path(tmp), args.uploads, random.Random(7).randrange(10**6), 96)
            # Every sample whole: no permanent failures, nothing that should reach a DLQ.
            for entries in files.values():
                for _, path in entries:
                    from PIL import Image

                    try:
                        with Image.open(path) as image:
                            image.load()
                    except OSError:
                        Image.new("RGB", (48, 32), (9, 9, 9)).save(path, "PNG")
            started = time.monotonic()
            for owner, entries in files.items():
                code, _, err = cli(
                    "--endpoint", stack.endpoint, "upload", *(str(p) for _, p in entries),
                    "--owner", owner, "--album", "burst",
                )  # fmt: skip
                if code != 0:
                    raise RuntimeError(f"pixflare upload failed: {err.strip()}")
            upload_seconds = time.monotonic() - started
            settled, waited = wait_empty(
                stack, ["VariantQueueUrl", "BackupQueueUrl"], args.settle_seconds
            )
            sqs = stack.client("sqs")
            rows = []
            names = {stack.outputs.get(q): name for name, q, _ in QUEUES}
            for poller in stack.pollers:
                name = names.get(poller.mapping.queue_url, poller.mapping.logical_id)
                s = poller.stats
                rows.append(
                    (
                        name,
                        poller.mapping.max_concurrency,
                        s.messages,
                        s.throttled_attempts,
                        s.throttled_batches,
                        s.throttled_messages,
                        queue_depth(sqs, dlq_url(sqs, poller.mapping.queue_url)),
                    )
                )
            reports = stack.function_reports()
            peak = stack.concurrency.peak if stack.concurrency else None
        finally:
            target.stop()
    wanted = sum(r[1] for r in rows)
    print(
        f"account concurrency {args.account_concurrency}; the mappings can ask for {wanted}; "
        f"{args.uploads} uploads in {upload_seconds:.1f} s; queues "
        f"{'empty' if settled else 'NOT empty'} {waited:.0f} s later; peak in use {peak}"
    )
    header = ("queue", "max conc", "received", "throttled attempts", "batches given up",
              "messages given up", "DLQ depth")  # fmt: skip
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(v) for v in row))
    print("function throttles: " + ", ".join(f"{k} {v['throttles']}" for k, v in reports.items()))
    dlq = sum(r[-1] for r in rows)
    given_up = sum(r[5] for r in rows)
    print(
        f"DLQ total {dlq}; messages whose receive was burnt by throttling {given_up}. "
        "A batch is given up only when no slot frees within the queue's visibility timeout "
        "(6 x the function timeout here), so with maxReceiveCount 3 a message reaches a DLQ "
        "by throttling alone only if that happens on three receives in a row. With each "
        "mapping's MaximumConcurrency derived so that their sum fits the account's budget "
        "(the concurrencyBudget CDK context), no invocation is throttled at all."
    )
    return 0 if dlq == 0 and settled else 1


if __name__ == "__main__":
    raise SystemExit(main())
