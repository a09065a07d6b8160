"""What Pixflare's jobs cost on AWS, from measurement on the embedded local stack.

N uploads go through the local stack, pipeline after pipeline:

1. upload + variants: `pixflare upload` of N images for an owner without backup,
   until the variant queue is empty;
2. upload + variants + backup: the same N images for an owner with a backup
   destination (a second S3-compatible server, moto in a child process); the
   backup's share is this run minus run 1;
3. a custom domain: `domain add`, its records served by a DNS server on loopback,
   until the domain worker marks it active (priced per domain, not per image);
4. the three daily jobs, fired as their EventBridge rules fire them (through the
   cron function), over the 2N images, until the queues are empty.

Every AWS call goes through an AwsFaultProxy (no faults): one in front of the
functions (their AWS_ENDPOINT_URL), one in front of the `pixflare` CLI (its
--endpoint). The Lambda pollers' own ReceiveMessage and DeleteMessageBatch are
counted by the stack's pollers (those that found messages; idle polling is a fixed
monthly estimate below). Lambda GB-s are each invocation's Billed Duration (1 ms
rounding up) plus its Init Duration (billed for on-demand functions since 1 Aug
2025) times its Memory Size, from the stack's REPORT figures. Storage is the bytes
of each image's original and eight variants, from the bucket listing.

Prices: bench/prices.py (us-east-1 list prices with their date). Run:
``python bench/cost.py [N] [--ai]`` (default N = 30).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import cli, queue_depth, write_samples
from bench.prices import (
    CLOUDFLARE_INCLUDED_OPERATIONS,
    CLOUDFLARE_MONTHLY_USD,
    CLOUDFLARE_OPERATIONS_PER_MESSAGE,
    MONTHLY,
    NOT_COUNTED,
    PRICES,
    PRICES_AS_OF,
    REGION,
)

NIGHTS_PER_MONTH = 30
DOMAIN = "photos.cost.test"
# Assumed for the idle-polling estimate (AWS does not publish it): pollers per mapping
# long-polling 20 s each, all month.
IDLE_POLLERS_PER_MAPPING = 5
LONG_POLL_SECONDS = 20

S3_PUT_CLASS = {
    "PutObject", "CopyObject", "ListObjectsV2", "ListObjects", "CreateMultipartUpload",
    "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "PutObjectTagging",
    "ListObjectVersions", "ListMultipartUploads", "ListParts", "PutBucketVersioning",
}  # fmt: skip
S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}
DDB_READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems", "DescribeTable"}
DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
DDB_DOUBLE = {"TransactWriteItems", "TransactGetItems"}  # transactions cost two units per item


@dataclass
class Usage:
    calls: Counter[str] = field(default_factory=Counter)  # "service.Operation"
    gb_s: float = 0.0
    invocations: float = 0.0
    init_ms: float = 0.0
    init_gb_s: float = 0.0
    cold_starts: float = 0.0

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.calls - other.calls,
            self.gb_s - other.gb_s,
            self.invocations - other.invocations,
            self.init_ms - other.init_ms,
            self.init_gb_s - other.init_gb_s,
            self.cold_starts - other.cold_starts,
        )

    def scaled(self, factor: float) -> Usage:
        return Usage(
            Counter({k: v * factor for k, v in self.calls.items()}),  # type: ignore[misc]
            self.gb_s * factor,
            self.invocations * factor,
            self.init_ms * factor,
            self.init_gb_s * factor,
            self.cold_starts * factor,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.gb_s + other.gb_s,
            self.invocations + other.invocations,
            self.init_ms + other.init_ms,
            self.init_gb_s + other.init_gb_s,
            self.cold_starts + other.cold_starts,
        )


def money(usd: float) -> str:
    return f"{usd:.10f}".rstrip("0").rstrip(".")


def billed_gb_s(functions: Any) -> tuple[float, int, float, float, int]:
    """Over every invocation so far: (billed ms + billed init ms) x memory in GB-s,
    invocations, init ms, init GB-s, cold starts."""
    total, invocations, init, init_gb_s, cold = 0.0, 0, 0.0, 0.0, 0
    for function in functions:
        stats = function.stats
        memory_gb = function.spec.memory_mb / 1024
        billed = sum(max(1, math.ceil(round(d, 2))) for d in stats.durations_ms)
        billed_init = sum(math.ceil(round(d, 2)) for d in stats.init_durations_ms)
        total += (billed + billed_init) / 1000 * memory_gb
        init_gb_s += billed_init / 1000 * memory_gb
        invocations += stats.invocations
        init += sum(stats.init_durations_ms)
        cold += stats.cold_starts
    return total, invocations, init, init_gb_s, cold


def function_usage(stack: Any, handler_prefix: str) -> Usage:
    """Lambda figures of the functions whose handler starts with the prefix."""
    functions = [f for f in stack.functions.values() if f.spec.handler.startswith(handler_prefix)]
    gb_s, invocations, init, init_gb_s, cold = billed_gb_s(functions)
    return Usage(Counter(), gb_s, invocations, init, init_gb_s, cold)


def with_lambda(calls_from: Usage, lambda_from: Usage) -> Usage:
    return Usage(
        calls_from.calls,
        lambda_from.gb_s,
        lambda_from.invocations,
        lambda_from.init_ms,
        lambda_from.init_gb_s,
        lambda_from.cold_starts,
    )


def snapshot(stack: Any, proxies: list[Any], cli_runs: int) -> Usage:
    calls: Counter[str] = Counter()
    for proxy in proxies:
        calls.update(proxy.calls)
    # The CLI finds the stack from an outputs document (one s3.GetObject a command);
    # against AWS that is cloudformation:DescribeStacks, which is free.
    calls["s3.GetObject"] -= cli_runs
    for poller in stack.pollers:
        s = poller.stats
        calls["sqs.ReceiveMessage (Lambda poller)"] += s.receive_calls - s.empty_receives
        calls["sqs.DeleteMessageBatch (Lambda poller)"] += s.delete_calls
    gb_s, invocations, init, init_gb_s, cold = billed_gb_s(stack.functions.values())
    return Usage(calls, gb_s, invocations, init, init_gb_s, cold)


class Runner:
    def __init__(self, stack: Any, cli_proxy: Any, fn_proxy: Any) -> None:
        self.stack, self.cli_proxy, self.fn_proxy = stack, cli_proxy, fn_proxy
        self.cli_runs = 0
        self.sqs = stack.client("sqs")

    def cli(self, *args: str) -> Any:
        self.cli_runs += 1
        code, out, err = cli("--endpoint", self.cli_proxy.endpoint, "--json", *args)
        if code != 0:
            raise RuntimeError(f"pixflare {' '.join(args[:2])}: {err.strip()}")
        return json.loads(out) if out.strip() else None

    def usage(self) -> Usage:
        return snapshot(self.stack, [self.cli_proxy, self.fn_proxy], self.cli_runs)

    def wait_empty(self, *outputs: str, bound: float = 600) -> None:
        started, quiet = time.monotonic(), 0
        while time.monotonic() - started < bound:
            depths = [queue_depth(self.sqs, self.stack.outputs[o]) for o in outputs]
            quiet = quiet + 1 if not any(depths) else 0
            if quiet >= 3:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{outputs} not empty after {bound:.0f} s")


def price_lines(usage: Usage, images: float, storage_gb_month: float) -> dict[str, float]:
    """Dollars per line item for `usage` (already scaled) plus the storage."""
    units: Counter[str] = Counter()
    for name, count in usage.calls.items():
        service, _, operation = name.partition(".")
        operation = operation.split(" ")[0]
        if service == "sqs":
            units["sqs_requests"] += count
        elif service == "s3":
            if operation in S3_FREE:
                continue
            units["s3_put" if operation in S3_PUT_CLASS else "s3_get"] += count
        elif service == "dynamodb":
            weight = 2 if operation in DDB_DOUBLE else 1
            if operation in DDB_READS:
                units["ddb_read"] += count * weight
            else:
                units["ddb_write"] += count * weight
        elif service == "kms":
            units["kms_requests"] += count
        elif service == "secretsmanager":
            units["secrets_requests"] += count
        elif service == "rekognition":
            units["rekognition_images"] += count
        else:
            units[f"other:{name}"] += count
    dollars = {key: count * PRICES[key].each for key, count in units.items() if key in PRICES}
    dollars["lambda_gb_s"] = usage.gb_s * PRICES["lambda_gb_s"].each
    dollars["lambda_requests"] = usage.invocations * PRICES["lambda_requests"].each
    dollars["s3_storage"] = storage_gb_month * PRICES["s3_storage"].each
    for key in units:
        if key.startswith("other:"):
            dollars[key] = 0.0  # listed, unpriced
    return dollars


def stored_bytes(stack: Any, owners: tuple[str, ...]) -> tuple[int, int]:
    """(bytes, images with nine objects) in the images bucket for these owners."""
    s3 = stack.client("s3")
    bucket = stack.outputs["ImagesBucketName"]
    total, per_image = 0, Counter[str]()
    for owner in owners:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=owner + "/"):
            for obj in page.get("Contents", []):
                total += obj["Size"]
                per_image[obj["Key"].rsplit("/", 1)[0]] += 1
    return total, sum(1 for n in per_image.values() if n == 9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, nargs="?", default=30)
    parser.add_argument("--ai", action="store_true", help="ENABLE_AI_CLASSIFICATION=true")
    parser.add_argument("--max-side", type=int, default=1600, help="largest sample side")
    parser.add_argument("--template", metavar="FILE", help="a synthesized template (JSON)")
    args = parser.parse_args(argv)
    n = args.count
    os.environ.update({"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"})
    from pixflare.commands.demo import DEMO_ENV, process_env
    from pixflare.commands.local import load_template
    from pixflare.local.aws_proxy import AwsFaultProxy
    from pixflare.local.dns import LocalDnsServer
    from pixflare.local.s3_server import MotoServerProcess
    from pixflare.local.stack import LocalStack

    template = load_template(args.template) if args.template else None
    target = MotoServerProcess()
    with (
        tempfile.TemporaryDirectory(prefix="pixflare-cost-") as tmp,
        (Path(tmp) / "stdout.txt").open("w") as printed,
        contextlib.redirect_stdout(printed),
        LocalDnsServer() as dns,
        AwsFaultProxy() as fn_proxy,
        AwsFaultProxy() as cli_proxy,
    ):
        env = {
            **DEMO_ENV,
            "PIXFLARE_DNS_NAMESERVERS": dns.nameserver,
            "ENABLE_AI_CLASSIFICATION": "true" if args.ai else "false",
        }
        stack = LocalStack(
            port=0,
            template=template,
            env={**os.environ, **env},
            log_file=Path(tmp) / "functions.log",
            run_schedules=False,
            function_endpoint=fn_proxy.endpoint,
        )
        stack.start()
        try:
            fn_proxy.upstream = cli_proxy.upstream = stack.endpoint
            with process_env(env):
                result = measure(
                    stack, Runner(stack, cli_proxy, fn_proxy), target, dns, n, tmp, args
                )
        finally:
            stack.stop()
            target.stop()
    report(result, n, args.ai)
    return 0


@dataclass
class Measured:
    pipelines: dict[str, Usage]
    per_image_bytes: float
    complete_images: int
    domain: Usage
    nightly: Usage
    library: int
    cloudflare_messages_per_image: float


def measure(
    stack: Any, run: Runner, target: Any, dns: Any, n: int, tmp: str, args: Any
) -> Measured:
    import boto3

    endpoint = target.start()
    seed = random.Random(11).randrange(10**6)
    samples = write_samples(Path(tmp) / "a", n, seed, args.max_side)
    files = [p for entries in samples.values() for _, p in entries]
    # Every sample whole (load.py breaks one in 17 on purpose): a failure is not the cost.
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
        except OSError:
            Image.new("RGB", (640, 480), (90, 120, 30)).save(path, "PNG")

    # 1. upload + variants
    variant_start = function_usage(stack, "lambdas.variant.")
    start = run.usage()
    run.cli("upload", *map(str, files), "--owner", "ann", "--album", "cost")
    run.wait_empty("VariantQueueUrl")
    p1 = run.usage() - start

    # 2. the same, for an owner with backup on
    boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="cost", aws_secret_access_key="cost-secret",
    ).create_bucket(Bucket="cost-backups")  # fmt: skip
    run.cli(
        "backup", "set", "--owner", "bea", "--endpoint", endpoint, "--bucket", "cost-backups",
        "--access-key-id", "cost", "--secret-access-key", "cost-secret", "--region", REGION,
        "--path-style",
    )  # fmt: skip
    start = run.usage()
    backup_start = function_usage(stack, "lambdas.backup.")
    run.cli("upload", *map(str, files), "--owner", "bea", "--album", "cost")
    run.wait_empty("VariantQueueUrl", "BackupQueueUrl")
    p2 = run.usage() - start
    # Calls by difference of the two runs; Lambda by function: the variant function over
    # both runs (2N images, halved to N), the backup function over run 2.
    variants_lambda = (function_usage(stack, "lambdas.variant.") - variant_start).scaled(0.5)
    backup_lambda = function_usage(stack, "lambdas.backup.") - backup_start

    # 3. a custom domain
    start = run.usage()
    added = run.cli("domain", "add", DOMAIN, "--owner", "ann")
    for record in added.get("records", []):
        dns.set(record["name"], record["type"], record["value"])
    deadline = time.monotonic() + 60
    while run.cli("domain", "status", DOMAIN)["status"] != "active":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{DOMAIN} not active after 60 s")
        time.sleep(0.5)
    run.wait_empty("DomainQueueUrl")
    domain = run.usage() - start

    # 4. the daily jobs, as EventBridge fires them, over the 2N images
    start = run.usage()
    rules = [r.logical_id for r in stack.provisioner.rules if r.schedule_expression]
    for rule in rules:
        stack.run_rule(rule)
        run.wait_empty("CronQueueUrl", "BackupQueueUrl", "VariantQueueUrl")
    nightly = run.usage() - start

    total_bytes, complete = stored_bytes(stack, ("ann", "bea"))
    sends = p1.calls["sqs.SendMessage"] + p1.calls["sqs.SendMessageBatch"]
    return Measured(
        pipelines={
            "upload + variants": with_lambda(p1, variants_lambda),
            "backup": with_lambda(p2 - p1, backup_lambda),
        },
        per_image_bytes=total_bytes / max(1, complete),
        complete_images=complete,
        domain=domain,
        nightly=nightly,
        library=2 * n,
        cloudflare_messages_per_image=(sends + (p2 - p1).calls["sqs.SendMessage"]) / n,
    )


LABELS = {
    "lambda_gb_s": "Lambda compute (GB-s, arm64)",
    "lambda_requests": "Lambda requests",
    "sqs_requests": "SQS requests",
    "s3_put": "S3 PUT/COPY/POST/LIST",
    "s3_get": "S3 GET/HEAD",
    "s3_storage": "S3 storage, 1 month",
    "ddb_write": "DynamoDB writes (WRU)",
    "ddb_read": "DynamoDB reads (RRU)",
    "kms_requests": "KMS requests",
    "secrets_requests": "Secrets Manager calls",
    "rekognition_images": "Rekognition DetectLabels",
}


def report(m: Measured, n: int, ai: bool) -> None:
    per_image = {name: u.scaled(1 / n) for name, u in m.pipelines.items()}
    # The daily jobs' AWS calls grow with the library (bench/cron_scale.py); their
    # Lambda compute here is mostly a few cold starts a night: a fixed monthly cost.
    nightly_calls = Usage(calls=m.nightly.calls).scaled(NIGHTS_PER_MONTH / m.library)
    nightly_compute = m.nightly.scaled(NIGHTS_PER_MONTH)
    nightly_compute.calls = Counter()
    month = sum(per_image.values(), Usage()) + nightly_calls
    gb = m.per_image_bytes / 1e9
    print(
        f"Pixflare jobs on AWS ({REGION} list prices {PRICES_AS_OF}); measured: {n} uploads "
        f"x 2 owners on the local stack{', AI on' if ai else ''}; {os.cpu_count()} CPU(s)"
    )
    print("\nAWS calls per image, by pipeline (and Lambda):")
    for name, usage in [*per_image.items(), ("daily jobs, 30 nights", nightly_calls)]:
        calls = ", ".join(f"{k} {v:.2f}" for k, v in sorted(usage.calls.items()) if abs(v) >= 0.005)
        print(f"  {name}: {usage.invocations:.2f} invocations, {usage.gb_s:.3f} GB-s; {calls}")
    init_share = sum(u.init_gb_s for u in m.pipelines.values()) / max(
        1e-9, sum(u.gb_s for u in m.pipelines.values())
    )
    print(
        f"  of the uploads' GB-s, {init_share:.0%} is Init Duration (cold starts: "
        f"{sum(u.cold_starts for u in m.pipelines.values()):.1f} per {n} images; fewer "
        "per image in a longer run)"
    )
    print(
        f"  daily jobs, one night over {m.library} images: {m.nightly.invocations:.0f} "
        f"invocations, {m.nightly.gb_s:.3f} GB-s (priced as a fixed monthly cost below)"
    )
    print(
        f"  storage: {m.per_image_bytes / 1e6:.3f} MB per image (original + 8 variants, "
        f"{m.complete_images} images listed; synthetic samples up to the --max-side)"
    )
    dollars = price_lines(month, 1, gb)
    rows = sorted(dollars.items(), key=lambda kv: -kv[1])
    total = sum(dollars.values())
    print(
        "\nCost per image uploaded with variants and backup, stored one month, with 30 "
        "nights of the daily jobs:"
    )
    print("| line item | unit price | per 1,000 images | per 1,000,000 images |")
    print("| --- | --- | ---: | ---: |")
    for key, value in rows:
        if key.startswith("other:"):
            print(f"| {key[6:]} (not priced) | - | - | - |")
            continue
        price = PRICES[key]
        print(
            f"| {LABELS.get(key, key)} | ${money(price.usd)} / {price.per:,} {price.unit} | "
            f"${value * 1_000:,.4f} | ${value * 1_000_000:,.2f} |"
        )
    print(f"| **total** | | **${total * 1_000:,.4f}** | **${total * 1_000_000:,.2f}** |")
    top = rows[0]
    print(f"\nDominant item: {LABELS.get(top[0], top[0])}, {top[1] / total:.0%} of the total.")
    domain_dollars = sum(price_lines(m.domain, 1, 0).values())
    print(
        f"A custom domain verified: ${domain_dollars:.6f} each "
        f"({sum(v for v in m.domain.calls.values()):.0f} AWS calls including the CLI's "
        "status polls, "
        f"{m.domain.invocations} invocations)."
    )
    idle = 4 * IDLE_POLLERS_PER_MAPPING * (30 * 24 * 3600 / LONG_POLL_SECONDS)
    cron_dollars = (
        nightly_compute.gb_s * PRICES["lambda_gb_s"].each
        + nightly_compute.invocations * PRICES["lambda_requests"].each
    )
    fixed = (
        idle * PRICES["sqs_requests"].each
        + MONTHLY["kms_key"].usd
        + MONTHLY["secret"].usd
        + cron_dollars
    )
    print(
        f"Fixed a month, not per image: ~${idle * PRICES['sqs_requests'].each:.2f} of idle "
        f"SQS polling by the four event source mappings (an estimate: "
        f"{IDLE_POLLERS_PER_MAPPING} pollers each long-polling {LONG_POLL_SECONDS} s, "
        f"{idle / 1e6:.1f}M requests; AWS does not publish the figure), "
        f"${MONTHLY['kms_key'].usd:.2f} for the KMS key, ${MONTHLY['secret'].usd:.2f} for "
        f"the secret, ${cron_dollars:.4f} of Lambda for 30 nights of the daily jobs: "
        f"~${fixed:.2f}."
    )
    sqs_per_image = sum(v for k, v in month.calls.items() if k.startswith("sqs."))
    ops = m.cloudflare_messages_per_image * CLOUDFLARE_OPERATIONS_PER_MESSAGE
    print(
        f"\nCloudflare (the seed): Queues ${CLOUDFLARE_MONTHLY_USD:.2f}/month including "
        f"{CLOUDFLARE_INCLUDED_OPERATIONS:,} operations. That figure covers the queues "
        f"only (Workers, R2 storage and operations, D1 and Workers AI are billed apart), "
        f"so it is not comparable to the total above, which is every service the jobs "
        f"use. Queue against queue: {m.cloudflare_messages_per_image:.1f} messages per "
        f"image here, ~{ops:.0f} Cloudflare operations (write, read, delete), so 1M "
        f"operations last ~{CLOUDFLARE_INCLUDED_OPERATIONS / ops:,.0f} images; on AWS the "
        f"same images make {sqs_per_image:.1f} SQS requests each "
        f"(${sqs_per_image * PRICES['sqs_requests'].each * 1e6:,.2f} per 1,000,000 images)."
    )
    print(
        "Approximations: DynamoDB is priced at one request unit per call (two for "
        "transactions); real units depend on item size (1 KB writes, 4 KB reads), items per "
        "Query/Batch call and read consistency. Durations are from this machine "
        "(x86, shared cores), not arm64 Lambda, whose CPU share grows with memory. "
        f"Not counted: {NOT_COUNTED}."
    )


if __name__ == "__main__":
    raise SystemExit(main())
