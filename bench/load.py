"""Load with faults on the embedded local stack: N uploads of mixed sizes and formats
(a few broken on purpose), faults injected at a low rate into the workers' S3 and
DynamoDB calls, the stack left to settle, the variant DLQ redriven with `pixflare dlq
redrive`, then the books balanced exactly:

    uploads = ready + failed-with-reason
    objects in the bucket = 9 per ready image + 1 (the original) per failed image
    one record and one path claim per upload, no other object, record or claim
    nothing left on the queue or in the DLQ, no record still pending

The stack is pixflare.local.stack.LocalStack: moto's server over HTTP on loopback, the
resources created from the synthesized template, and the variant worker driven by its
event source mapping (batch size, batching window, concurrency, partial batch
responses, maxReceiveCount as the template says). Uploads go through `pixflare upload`
(pixflare.cli.main, in-process, with --endpoint). The functions reach moto through an
HTTP proxy (pixflare/local/aws_proxy.py, the stack's function_endpoint) that
refuses a few of their S3 and DynamoDB requests with real AWS errors; nothing else
goes through it, so every fault lands in a worker. A fault refuses one SDK attempt:
the SDK retries it as it would against AWS, and a call fails only when every one of
its attempts is refused.

Besides the random faults, every OUTAGE_EVERY-th image's original is unreadable for the
whole faulted phase (an outage of one key): its job must walk maxReceiveCount receives
into the DLQ, and only the redrive can finish it.

Run: ``python bench/load.py [N]`` (default 500; ``--help`` for the rest); prints
throughput and the reconciliation table; exits 1 if the books do not balance.
tests/integration/test_reliability_load.py runs ``run_load`` with N = 30.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:  # imported where used: main() sets the environment they read first
    from pixflare.local.aws_proxy import AwsFaultProxy
    from tests.support.faults import FaultPlan

FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
BROKEN_EVERY = 17  # one upload in 17 is a truncated file: a permanent failure
OUTAGE_EVERY = 50  # images 5, 55, 105, ...: their original unreadable while faults run
OUTAGE_OFFSET = 5
OWNERS = ("ann", "bob", "cyd")
ALBUM = "load"
VARIANTS_PER_IMAGE = 8
POLL_SECONDS = 0.2
# The functions' first retry delay (lambdas.shared.config); 0 makes a failed record
# visible again at once.
BACKOFF_VARIABLE = "PIXFLARE_BACKOFF_BASE_SECONDS"
QUIET_POLLS = 3  # the queue must read empty this many polls in a row to count as settled


@dataclass
class LoadReport:
    uploads: int
    ready: int = 0
    failed: int = 0
    failed_without_reason: int = 0
    pending: int = 0
    records: int = 0
    stray_records: int = 0  # not one of the uploads, or under another name
    claims: int = 0
    stray_claims: int = 0
    objects: int = 0
    expected_objects: int = 0
    unexpected_keys: int = 0
    missing_keys: int = 0
    queue_left: int = 0
    dlq_left: int = 0
    # Before the redrive: the jobs in the DLQ, and pending images whose job was not there.
    dlq_jobs: int = 0
    dlq_jobs_for_settled_images: int = 0
    outage_images: int = 0
    lost_before_redrive: int = 0
    redriven: int = 0
    settled_after_redrive: int = 0
    in_progress_markers: int = 0
    settled_in_time: bool = True
    faults: Counter[str] = field(default_factory=Counter)  # the random ones: attempts, by call
    outage_faults: int = 0  # attempts to read the outage images' originals refused
    # Every worker attempt that got no good answer, as "call cause" (the proxy's counts
    # while the faults ran): the injected faults and the stack's own failures alike.
    sdk_retries: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0
    batches: int = 0
    retried_items: int = 0
    failed_batches: int = 0
    stack_errors: int = 0
    upload_seconds: float = 0.0
    settle_seconds: float = 0.0
    marker_wait_seconds: float = 0.0
    redrive_seconds: float = 0.0

    @property
    def failed_not_injected(self) -> int:
        """Failed attempts that were the stack's own: 5xx from moto, no answer from it, a
        caller that gave up waiting (its read timeout)."""
        return sum(v for k, v in self.sdk_retries.items() if not k.endswith(" injected"))

    @property
    def balanced(self) -> bool:
        return (
            self.settled_in_time
            and self.uploads == self.ready + self.failed
            and self.failed_without_reason == 0
            and self.pending == 0
            and self.records == self.claims == self.uploads
            and self.stray_records == self.stray_claims == 0
            and self.objects == self.expected_objects
            and self.unexpected_keys == 0
            and self.missing_keys == 0
            and self.queue_left == 0
            and self.dlq_left == 0
            and self.lost_before_redrive == 0
        )

    def table(self) -> list[str]:
        rows = [
            ("uploads", self.uploads, ""),
            ("ready", self.ready, ""),
            ("failed, with a reason", self.failed - self.failed_without_reason, ""),
            ("failed, without a reason", self.failed_without_reason, "must be 0"),
            ("pending", self.pending, "must be 0"),
            ("ready + failed", self.ready + self.failed, "must equal uploads"),
            ("image records", self.records, "one per upload"),
            ("path claims", self.claims, "one per upload"),
            ("stray records + claims", self.stray_records + self.stray_claims, "must be 0"),
            ("objects in the bucket", self.objects, ""),
            (
                "expected objects",
                self.expected_objects,
                f"9 x {self.ready} ready + {self.failed} originals",
            ),
            ("unexpected keys", self.unexpected_keys, "must be 0"),
            ("missing keys", self.missing_keys, "must be 0"),
            ("left on the variant queue", self.queue_left, "must be 0"),
            ("left in the variant DLQ", self.dlq_left, "must be 0"),
            ("jobs in the DLQ before redrive", self.dlq_jobs, ""),
            ("  for outage images", self.outage_images, ""),
            ("  for images already settled", self.dlq_jobs_for_settled_images, ""),
            ("pending, job not in the DLQ", self.lost_before_redrive, "lost: must be 0"),
            ("redriven", self.redriven, ""),
        ]
        width = max(len(name) for name, _, _ in rows)
        return [f"{name:<{width}}  {value:>6}  {note}".rstrip() for name, value, note in rows]

    def lines(self) -> list[str]:
        settled_first = self.ready + self.failed - self.settled_after_redrive
        return [
            *self.table(),
            f"faults injected {sum(self.faults.values())} at random (SDK attempts refused): "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
            + f"; outage read attempts refused {self.outage_faults}",
            "failed SDK attempts (what botocore retries; while faults ran): "
            f"{sum(self.sdk_retries.values())}, not injected {self.failed_not_injected}"
            + "".join(f"; {k} {v}" for k, v in sorted(self.sdk_retries.items())),
            f"variant worker: {self.deliveries} deliveries in {self.batches} batches for "
            f"{self.uploads} jobs; {self.retried_items} retried, {self.failed_batches} "
            f"whole batches failed, stack errors {self.stack_errors}",
            f"idempotency markers still in progress before the redrive: "
            f"{self.in_progress_markers} (waited {self.marker_wait_seconds:.1f} s for expiry)",
            f"upload: {self.upload_seconds:.1f} s = "
            f"{_per_second(self.uploads, self.upload_seconds)} uploads/s"
            " (the worker running meanwhile)",
            f"settled: {settled_first} images {self.settle_seconds:.1f} s after the first upload"
            f" = {_per_second(settled_first, self.settle_seconds)} images settled/s",
            f"redrive: {self.settled_after_redrive} more settled in {self.redrive_seconds:.1f} s",
            "BALANCED" if self.balanced else "NOT BALANCED",
        ]


def _per_second(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f}" if seconds > 0 else "-"


def sample_image(index: int, rng: random.Random, max_side: int = 700) -> tuple[bytes, str]:
    from PIL import Image

    fmt = FORMATS[index % len(FORMATS)]
    width, height = rng.randint(16, max_side), rng.randint(16, max_side * 5 // 7)
    mode = "RGBA" if fmt in ("PNG", "WEBP") and index % 3 == 0 else "RGB"
    image = Image.new(mode, (width, height), tuple(rng.randrange(256) for _ in mode))
    image.paste((rng.randrange(256), 0, 0, 255)[: len(mode)], (0, 0, width // 2, height // 3))
    out = io.BytesIO()
    image.save(out, fmt)
    data = out.getvalue()
    if is_broken(index):
        data = data[: max(12, len(data) // 3)]
    return data, filename_of(index)


def filename_of(index: int) -> str:
    return f"img-{index:05d}.{FORMATS[index % len(FORMATS)].lower()}"


def is_broken(index: int) -> bool:
    return index % BROKEN_EVERY == BROKEN_EVERY - 1


def is_outage(index: int) -> bool:
    return index % OUTAGE_EVERY == OUTAGE_OFFSET


def owner_of(index: int) -> str:
    return OWNERS[index % len(OWNERS)]


def original_key(index: int) -> str:
    return f"{owner_of(index)}/{ALBUM}/{filename_of(index)}/original"


def cli(*args: str) -> tuple[int, str, str]:
    from pixflare.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- reading the stack (its own clients: never hooked) ---------------------------------


def queue_depth(sqs: Any, url: str) -> int:
    """Visible + in flight + delayed: 0 means every message was deleted or moved."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def wait_settled(sqs: Any, queue_url: str, deadline_seconds: float) -> bool:
    """Until the queue reads empty QUIET_POLLS times in a row, or the deadline passes."""
    deadline = time.monotonic() + deadline_seconds
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if queue_depth(sqs, queue_url) == 0 else 0
        if quiet >= QUIET_POLLS:
            return True
        time.sleep(POLL_SECONDS)
    return False


def dlq_image_ids(sqs: Any, dlq_url: str, bound: int) -> list[str]:
    """The imageId of every job in the DLQ; each message is made visible again after."""
    found: list[str] = []
    held: list[str] = []
    for _ in range(bound // 10 + 10):
        messages = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            found.append(str(json.loads(message["Body"]).get("imageId")))
            held.append(message["ReceiptHandle"])
    for start in range(0, len(held), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(held[start : start + 10])
            ],
        )
    return found


def scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(
            {k: deserializer.deserialize(v) for k, v in item.items()} for item in page["Items"]
        )
    return items


def wait_for_in_progress_markers(ddb: Any, table: str, bound_seconds: float) -> tuple[int, float]:
    """Wait until every INPROGRESS idempotency marker has expired (bounded).

    A job whose work succeeded but whose marker could not be marked COMPLETED keeps
    the marker in progress until the invocation's time would have run out; a
    redelivery before that is refused as "in progress" and retried, and with backoff
    0 those retries reach the DLQ at once. An operator redrives later than a function
    timeout; this waits exactly as long, no longer.
    """
    started = time.monotonic()
    markers = [i for i in scan(ddb, table) if i.get("status") == "INPROGRESS"]
    if not markers:
        return 0, 0.0
    latest_ms = max(int(m.get("in_progress_expiration", 0)) for m in markers)
    wait = min(bound_seconds, max(0.0, latest_ms / 1000 - time.time() + 0.1))
    time.sleep(wait)
    return len(markers), time.monotonic() - started


# -- faults ----------------------------------------------------------------------------


@contextmanager
def worker_faults(
    proxy: AwsFaultProxy, rate: float, seed: int, max_faults: int, outage_keys: set[str]
) -> Iterator[list[FaultPlan]]:
    """On the proxy in front of the workers: the outage keys' reads failing every
    time, and low-rate faults on the workers' S3 and DynamoDB calls. The outage plan
    is asked first, so every refused read of an outage original counts as the outage's.
    Only the functions talk through the proxy: the uploads are never refused."""
    from tests.support.faults import SLOW_DOWN, FaultPlan, ProvisionedThroughputExceeded

    def outage(params: dict[str, Any]) -> bool:
        return str(params.get("url_path", "")).endswith(tuple(outage_keys) or ("\0",))

    plans = [
        FaultPlan(("s3.GetObject",), kind=SLOW_DOWN, only_if=outage),
        FaultPlan(
            ("s3.GetObject", "s3.PutObject"),
            rate=rate,
            max_faults=max_faults,
            kind=SLOW_DOWN,
            seed=seed,
        ),
        FaultPlan(
            ("dynamodb.GetItem", "dynamodb.UpdateItem", "dynamodb.PutItem"),
            rate=rate,
            max_faults=max_faults,
            kind=ProvisionedThroughputExceeded,
            seed=seed + 1,
        ),
    ]
    with ExitStack() as stack:
        for plan in plans:
            stack.enter_context(proxy.faults(plan))
        yield plans


# -- the run ---------------------------------------------------------------------------


def write_samples(
    workdir: Path, count: int, seed: int, max_side: int
) -> dict[str, list[tuple[int, Path]]]:
    """The images on disk, grouped by owner: (upload index, file)."""
    rng = random.Random(seed)
    files: dict[str, list[tuple[int, Path]]] = {owner: [] for owner in OWNERS}
    for index in range(count):
        data, filename = sample_image(index, rng, max_side)
        path = workdir / owner_of(index) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[owner_of(index)].append((index, path))
    return files


def upload(stack: Any, files: dict[str, list[tuple[int, Path]]]) -> dict[str, int]:
    """`pixflare upload` once per owner; returns imageId -> the upload's index."""
    uploaded: dict[str, int] = {}
    for owner, entries in files.items():
        if not entries:
            continue
        code, out, err = cli(
            "--endpoint", stack.endpoint, "--json", "upload",
            *(str(p) for _, p in entries), "--owner", owner, "--album", ALBUM,
        )  # fmt: skip
        if code != 0:
            raise RuntimeError(f"pixflare upload failed: {err.strip()}")
        results = json.loads(out)
        results = results if isinstance(results, list) else [results]
        for (index, _), result in zip(entries, results, strict=True):
            uploaded[result["imageId"]] = index
    return uploaded


def run_load(
    stack: Any,
    count: int,
    *,
    proxy: AwsFaultProxy,
    fault_rate: float = 0.02,
    seed: int = 2024,
    max_side: int = 700,
    settle_seconds: float = 600.0,
    age_in_progress_markers: bool = False,
) -> LoadReport:
    """Everything against an already-started LocalStack (backoff base 0 expected) whose
    functions reach AWS through ``proxy`` (its function_endpoint; see main()).

    ``age_in_progress_markers``: age markers left in progress instead of waiting them
    out (up to the function's timeout), as tests/support/faults.expire_in_progress does
    for the reliability tests; the bench waits.
    """
    sqs, ddb = stack.client("sqs"), stack.client("dynamodb")
    queue_url, dlq_url = stack.outputs["VariantQueueUrl"], stack.outputs["VariantDlqUrl"]
    poller = stack.poller_for("VariantQueueUrl")
    outage_keys = {original_key(i) for i in range(count) if is_outage(i)}

    failed_before = proxy.failed_attempts()
    with (
        tempfile.TemporaryDirectory(prefix="pixflare-load-") as tmp,
        worker_faults(proxy, fault_rate, seed, max(5, count // 4), outage_keys) as plans,
    ):
        files = write_samples(Path(tmp), count, seed, max_side)
        started = time.monotonic()
        uploaded = upload(stack, files)
        upload_seconds = time.monotonic() - started
        settled = wait_settled(sqs, queue_url, settle_seconds)
        settle_seconds_taken = time.monotonic() - started
    failed_attempts = proxy.failed_attempts() - failed_before

    # The faults have stopped. Every image not settled must have its job in the DLQ.
    in_dlq = dlq_image_ids(sqs, dlq_url, count)
    records = image_records(ddb, stack.outputs["ImagesTableName"])
    pending = {str(r["image_id"]) for r in records if r.get("variants_status") == "pending"}
    done = {str(r["image_id"]) for r in records} - pending
    idempotency_table = stack.outputs["IdempotencyTableName"]
    if age_in_progress_markers:
        from tests.support.faults import expire_in_progress

        markers, marker_wait = expire_in_progress(idempotency_table, client=ddb), 0.0
    else:
        markers, marker_wait = wait_for_in_progress_markers(
            ddb, idempotency_table, poller.function.spec.timeout_seconds + 1
        )
    redrive_started = time.monotonic()
    code, out, err = cli("--endpoint", stack.endpoint, "dlq", "redrive", "variant", "--json")
    if code != 0:
        raise RuntimeError(f"pixflare dlq redrive failed: {err.strip()}")
    settled = wait_settled(sqs, queue_url, settle_seconds) and settled
    redrive_seconds = time.monotonic() - redrive_started

    report = LoadReport(uploads=count)
    reconcile(stack, uploaded, report)
    report.queue_left = queue_depth(sqs, queue_url)
    report.dlq_left = queue_depth(sqs, dlq_url)
    report.dlq_jobs = len(in_dlq)
    report.dlq_jobs_for_settled_images = len(set(in_dlq) & done)
    report.outage_images = sum(1 for i in in_dlq if i in uploaded and is_outage(uploaded[i]))
    report.lost_before_redrive = len(pending - set(in_dlq))
    report.redriven = int(json.loads(out)["moved"])
    report.settled_after_redrive = len(pending)
    report.in_progress_markers = markers
    report.settled_in_time = settled
    report.outage_faults = sum(plans[0].injected.values())
    report.faults = sum((Counter(p.injected) for p in plans[1:]), Counter())
    report.sdk_retries = failed_attempts
    report.deliveries = poller.stats.messages
    report.batches = poller.stats.batches
    report.retried_items = poller.stats.failed_items
    report.failed_batches = poller.stats.failed_batches
    report.stack_errors = len(stack.errors)
    report.upload_seconds = upload_seconds
    report.settle_seconds = settle_seconds_taken
    report.marker_wait_seconds = marker_wait
    report.redrive_seconds = redrive_seconds
    return report


def image_records(ddb: Any, table: str) -> list[dict[str, Any]]:
    return [i for i in scan(ddb, table) if str(i.get("pk", "")).startswith("image#")]


def reconcile(stack: Any, uploaded: dict[str, int], report: LoadReport) -> None:
    """Count records, claims and objects against what the uploads should have left."""
    from lambdas.shared.keys import VARIANT_NAMES, ImagePath

    items = scan(stack.client("dynamodb"), stack.outputs["ImagesTableName"])
    records = [i for i in items if str(i.get("pk", "")).startswith("image#")]
    claims = [i for i in items if str(i.get("pk", "")).startswith("path#")]
    statuses: Counter[str] = Counter()
    expected: set[str] = set()
    for record in records:
        status = str(record.get("variants_status"))
        statuses[status] += 1
        path = ImagePath(str(record["owner"]), str(record["album"]), str(record["filename"]))
        expected.add(str(record["original_key"]))
        if status == "ready":
            expected |= {path.variant_key(name) for name in VARIANT_NAMES}
        if status == "failed" and not record.get("error"):
            report.failed_without_reason += 1
    report.ready, report.failed = statuses["ready"], statuses["failed"]
    report.pending = sum(statuses.values()) - report.ready - report.failed
    # Records and claims that are not exactly one per upload, under its own name.
    report.stray_records = len(records) - sum(
        1
        for r in records
        if r["image_id"] in uploaded and r["filename"] == filename_of(uploaded[r["image_id"]])
    )
    report.records = len(records)
    report.claims = len(claims)
    report.stray_claims = len(claims) - len(
        {str(c.get("image_id")) for c in claims} & set(uploaded)
    )
    keys: list[str] = []
    bucket = stack.outputs["ImagesBucketName"]
    for page in stack.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    report.objects = len(keys)
    report.expected_objects = (VARIANTS_PER_IMAGE + 1) * report.ready + report.failed
    report.unexpected_keys = len(set(keys) - expected)
    report.missing_keys = len(expected - set(keys))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, nargs="?", default=500)
    parser.add_argument("--fault-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--max-side", type=int, default=700)
    parser.add_argument(
        "--settle-seconds", type=float, default=600, help="bound on each wait for the queue"
    )
    args = parser.parse_args(argv)
    # Before anything imports the shared runtime, which reads these once.
    os.environ.update(
        {
            "POWERTOOLS_METRICS_NAMESPACE": "Pixflare",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    from pixflare.local.aws_proxy import AwsFaultProxy
    from pixflare.local.stack import LocalStack

    with (
        AwsFaultProxy() as proxy,
        tempfile.TemporaryDirectory(prefix="pixflare-load-logs-") as logs,
        # Powertools prints a metric set once it holds 100 values, even with metrics
        # disabled (it never clears them then): keep that out of the report.
        (Path(logs) / "stdout.txt").open("w") as printed,
        contextlib.redirect_stdout(printed),
        LocalStack(
            port=0,
            env={BACKOFF_VARIABLE: "0"},
            log_file=Path(logs) / "functions.jsonl",
            run_schedules=False,
            function_endpoint=proxy.endpoint,
        ) as stack,
    ):
        proxy.upstream = stack.endpoint  # the functions' requests wait for it until now
        report = run_load(
            stack,
            args.count,
            proxy=proxy,
            fault_rate=args.fault_rate,
            seed=args.seed,
            max_side=args.max_side,
            settle_seconds=args.settle_seconds,
        )
    print(f"local stack {stack.endpoint}; {os.cpu_count()} CPU(s)")
    for line in report.lines():
        print(line)
    return 0 if report.balanced else 1


if __name__ == "__main__":
    raise SystemExit(main())
