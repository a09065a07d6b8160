"""Load with faults: N uploads of mixed sizes and formats (a few of them broken on
purpose), the variant queue worked to the end with S3 / DynamoDB faults injected at a
low rate, the DLQ redriven once, then the books balanced exactly:

    uploads = ready + failed-with-reason
    objects in the bucket = 9 per ready image + 1 per failed image, no duplicates
    nothing left on the queue or in the DLQ, no record still pending

Runs over in-process moto and the real handler through the same queue driver the
reliability tests use (receive a batch of 5, call the handler, delete what it did not
report failed, backoff 0). Run: ``python bench/load.py [N]`` (default 500); prints
throughput and the reconciliation; exits 1 if the books do not balance.
tests/integration/test_reliability_load.py runs the same function with N = 40.
"""

from __future__ import annotations

import io
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
BROKEN_EVERY = 17  # one upload in 17 is a truncated file: a permanent failure


@dataclass
class LoadReport:
    uploads: int
    ready: int
    failed: int
    failed_without_reason: int
    pending: int
    objects: int
    expected_objects: int
    duplicate_keys: int
    unexpected_keys: int
    queue_left: int
    dlq_left: int
    redriven: int
    faults: Counter[str] = field(default_factory=Counter)
    upload_seconds: float = 0.0
    process_seconds: float = 0.0
    deliveries: int = 0

    @property
    def balanced(self) -> bool:
        return (
            self.uploads == self.ready + self.failed
            and self.failed_without_reason == 0
            and self.pending == 0
            and self.objects == self.expected_objects
            and self.duplicate_keys == 0
            and self.unexpected_keys == 0
            and self.queue_left == 0
            and self.dlq_left == 0
        )

    def lines(self) -> list[str]:
        rate = self.uploads / self.process_seconds if self.process_seconds else 0.0
        return [
            f"uploads {self.uploads}: ready {self.ready} + failed {self.failed} "
            f"(without a reason: {self.failed_without_reason}), pending {self.pending}",
            f"objects {self.objects} (expected 9 x {self.ready} + {self.failed} = "
            f"{self.expected_objects}); duplicate keys {self.duplicate_keys}, "
            f"unexpected keys {self.unexpected_keys}",
            f"left on the queue {self.queue_left}, in the DLQ {self.dlq_left}; "
            f"redriven {self.redriven}",
            f"faults injected {sum(self.faults.values())}: {dict(self.faults)}",
            f"deliveries {self.deliveries} for {self.uploads} jobs",
            f"upload {self.upload_seconds:.1f} s; variants {self.process_seconds:.1f} s "
            f"= {rate:.1f} images/s",
            "BALANCED" if self.balanced else "NOT BALANCED",
        ]


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
    if index % BROKEN_EVERY == BROKEN_EVERY - 1:
        data = data[: max(12, len(data) // 3)]
    return data, f"img-{index:05d}.{fmt.lower()}"


def run_load(
    count: int, *, fault_rate: float = 0.02, seed: int = 2024, max_side: int = 700
) -> LoadReport:
    """Everything inside an already-active moto mock with the project's resources."""
    import boto3

    from lambdas.shared.config import load_settings
    from lambdas.shared.images import ImageRepository
    from lambdas.shared.uploads import store_upload
    from lambdas.variant import handler as variant_handler
    from tests.support.aws_resources import REGION, Resources
    from tests.support.faults import (
        SLOW_DOWN,
        FaultPlan,
        drive_queue,
        expire_in_progress,
        inject,
        queue_depth,
        redrive,
    )

    resources: Resources = _resources
    settings = load_settings()
    rng = random.Random(seed)
    started = time.perf_counter()
    image_ids = []
    owners = ("ann", "bob", "cyd")
    for index in range(count):
        data, filename = sample_image(index, rng, max_side)
        upload = store_upload(
            settings, data, owner=owners[index % 3], album="load", filename=filename
        )
        image_ids.append(upload.record.image_id)
    upload_seconds = time.perf_counter() - started

    def work() -> int:
        result = drive_queue(
            resources.queue_urls["variant"],
            resources.queue_arns["variant"],
            variant_handler.handler,
            batch_size=5,
            max_rounds=count * 4,
            between_rounds=lambda: expire_in_progress(resources.tables["idempotency"]),
        )
        return result.deliveries

    plan = FaultPlan(
        ("s3.GetObject", "s3.PutObject", "dynamodb.GetItem", "dynamodb.UpdateItem"),
        rate=fault_rate,
        max_faults=max(5, count // 4),
        kind=SLOW_DOWN,
        seed=seed,
    )
    started = time.perf_counter()
    with inject(plan):
        deliveries = work()
    redriven = redrive(resources.dlq_urls["variant"], resources.queue_urls["variant"])
    deliveries += work()
    process_seconds = time.perf_counter() - started

    images = ImageRepository(resources.tables["images"])
    statuses: Counter[str] = Counter()
    failed_without_reason = 0
    expected_keys: set[str] = set()
    from lambdas.shared.keys import VARIANT_NAMES

    for image_id in image_ids:
        record = images.get(image_id)
        assert record is not None
        statuses[record.variants_status] += 1
        expected_keys.add(record.original_key)
        if record.variants_status == "ready":
            expected_keys |= {record.path.variant_key(n) for n in VARIANT_NAMES}
        if record.variants_status == "failed" and not record.error:
            failed_without_reason += 1
    keys: list[str] = []
    s3 = boto3.client("s3", region_name=REGION)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=resources.bucket):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return LoadReport(
        uploads=count,
        ready=statuses["ready"],
        failed=statuses["failed"],
        failed_without_reason=failed_without_reason,
        pending=statuses["pending"],
        objects=len(keys),
        expected_objects=9 * statuses["ready"] + statuses["failed"],
        duplicate_keys=len(keys) - len(set(keys)),
        unexpected_keys=len(set(keys) ^ expected_keys),
        queue_left=queue_depth(resources.queue_urls["variant"]),
        dlq_left=queue_depth(resources.dlq_urls["variant"]),
        redriven=redriven,
        faults=Counter(plan.injected),
        upload_seconds=upload_seconds,
        process_seconds=process_seconds,
        deliveries=deliveries,
    )


_resources: Any = None


def use_resources(resources: Any) -> None:
    """The moto resources run_load works on (the test passes its fixture's)."""
    global _resources
    _resources = resources


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    # Before anything imports the shared runtime, which reads these once.
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Pixflare",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )
    from moto import mock_aws

    from lambdas.shared import worker
    from tests.support.aws_resources import create_resources

    worker.BACKOFF_BASE_SECONDS = 0
    with mock_aws():
        resources = create_resources()
        os.environ.update(resources.env("variant"))
        use_resources(resources)
        report = run_load(count)
    for line in report.lines():
        print(line)
    return 0 if report.balanced else 1


if __name__ == "__main__":
    raise SystemExit(main())
