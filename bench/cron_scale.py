"""AWS calls per image for the three daily jobs, at N = 1,000 and N = 4,000 images.

Seeds in-process moto (BatchWriteItem for records and view counters, tiny objects),
runs each job to completion, and counts every call the jobs make with a botocore
``before-call.*.*`` hook on the project's cached clients and on the backup
destination clients. Cost grows linearly when the two figures are close: every
job pages through indexes and listings and reads / writes / deletes / sends in
batches. Run: ``python bench/cron_scale.py`` (prints a table; no timing asserted).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = (1_000, 4_000)
IMAGES_PER_OWNER = 50
ORPHAN_SHARE = 10  # one orphaned prefix per 10 images
DESTINATION_BUCKET = "pixflare-bench-backups"


def configure_environment() -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_SERVICE_NAME": "pixflare-bench",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)


def seed(n: int, now: datetime) -> Any:
    """N images over N/50 owners (each with a destination): a quarter expired soft-deletes,
    a quarter pending backup, a quarter synced (with a good backup), a quarter neither;
    yesterday's views for every live image; N/10 orphaned prefixes."""
    import boto3
    from pydantic import SecretStr

    from lambdas.backup.pipeline import META_SHA256, META_SIZE
    from lambdas.cron.view_counters import expires_at, view_shard, views_partition
    from lambdas.shared.clock import iso
    from lambdas.shared.config import load_settings
    from lambdas.shared.destinations import (
        Destination,
        DestinationCredentials,
        DestinationRepository,
        encrypt_credentials,
    )
    from lambdas.shared.dynamo import to_item
    from lambdas.shared.images import backup_state_fields
    from lambdas.shared.keys import ImagePath
    from tests.support.aws_resources import create_resources

    resources = create_resources()
    os.environ.update(resources.env("cron"))
    load_settings.cache_clear()  # type: ignore[attr-defined]
    settings = load_settings()
    s3 = boto3.client("s3")
    ddb = boto3.client("dynamodb")
    s3.create_bucket(Bucket=DESTINATION_BUCKET)
    owners = [f"owner{o:04d}" for o in range(max(1, n // IMAGES_PER_OWNER))]
    repository = DestinationRepository(settings.destinations_table)
    for owner in owners:
        ciphertext = encrypt_credentials(
            settings, owner, DestinationCredentials("AKIABENCHKEY00000001", SecretStr("bench"))
        )
        repository.put(
            Destination(owner=owner, bucket=DESTINATION_BUCKET, credentials_ciphertext=ciphertext)
        )

    yesterday = (now - timedelta(days=1)).date()
    created = iso(now - timedelta(days=120))
    images: list[dict[str, Any]] = []
    stats: list[dict[str, Any]] = []
    body = b"x" * 16
    sha = "ab" * 32
    for i in range(n):
        owner = owners[i // IMAGES_PER_OWNER % len(owners)]
        image_id = f"{i:032x}"
        path = ImagePath(owner, "album", f"img{i:06d}.jpg")
        kind = i % 4
        status = {0: "synced", 1: "pending", 2: "synced", 3: "none"}[kind]
        record: dict[str, Any] = {
            "pk": f"image#{image_id}",
            "image_id": image_id,
            "owner": owner,
            "album": path.album,
            "filename": path.filename,
            "bucket": resources.bucket,
            "original_key": path.original_key,
            "bytes": len(body),
            "sha256": sha,
            "created_at": created,
            "variants_status": "ready",
            "variants_ready": ["thumb"],
        }
        fields, _ = backup_state_fields(owner, status, created)  # type: ignore[arg-type]
        record.update(fields)
        if status == "synced":
            key = f"{owner}/{path.album}/{path.filename}"
            record["backup"] = {"key": key, "sha256": sha, "bytes": len(body)}
            s3.put_object(
                Bucket=DESTINATION_BUCKET,
                Key=key,
                Body=body,
                Metadata={META_SHA256: sha, META_SIZE: str(len(body))},
            )
        if kind == 0:
            record["deleted_at"] = iso(now - timedelta(days=45))
            record["deleted_pk"] = "deleted"
        else:
            stats.append(
                {
                    "pk": views_partition(yesterday, view_shard(image_id)),
                    "sk": image_id,
                    "owner": owner,
                    "views": i % 7 + 1,
                    "h10": i % 7 + 1,
                    "expires_at": expires_at(yesterday),
                }
            )
        images.append(record)
        images.append({"pk": f"path#{path.claim}", "image_id": image_id, "created_at": created})
        for key in (path.original_key, path.variant_key("thumb")):
            s3.put_object(Bucket=resources.bucket, Key=key, Body=body)
    for i in range(n // ORPHAN_SHARE):
        prefix = ImagePath(owners[i % len(owners)], "gone", f"orphan{i:06d}.jpg").prefix
        for leaf in ("original", "w128"):
            s3.put_object(Bucket=resources.bucket, Key=prefix + leaf, Body=body)
    for table, items in ((resources.tables["images"], images), (resources.tables["stats"], stats)):
        for start in range(0, len(items), 25):
            ddb.batch_write_item(
                RequestItems={
                    table: [{"PutRequest": {"Item": to_item(i)}} for i in items[start : start + 25]]
                }
            )
    return resources


def make_moto_transactions_cheap() -> None:
    """moto snapshots the whole table once per action of a TransactWriteItems (to roll back
    a failed condition), which makes a 100-action transaction O(100 x table) in the mock.
    The jobs' transactions carry no conditions, so the bench skips the snapshot; what
    DynamoDB is asked (and what is counted) is unchanged."""
    import copy
    import types

    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[attr-defined]


class CallCounter:
    """Counts calls on the cached clients and on every destination client made afterwards."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def hook(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def install(self) -> None:
        from lambdas.backup import remote
        from lambdas.shared import aws

        for service in ("s3", "dynamodb", "sqs", "kms"):
            for client in aws.client(service).every_client():
                client.meta.events.register("before-call.*.*", self.hook)
        remote._session().events.register("before-call.*.*", self.hook)

    def take(self) -> Counter[str]:
        taken, self.calls = self.calls, Counter()
        return taken


def run_size(n: int) -> dict[str, tuple[int, Counter[str], Any, float]]:
    from moto import mock_aws

    from lambdas.backup import remote
    from lambdas.cron.registry import run_to_completion
    from lambdas.shared.aws import reset_clients
    from lambdas.shared.config import load_settings

    now = datetime.now(UTC) + timedelta(days=2)  # objects are past the orphan grace period
    results: dict[str, tuple[int, Counter[str], Any, float]] = {}
    make_moto_transactions_cheap()
    with mock_aws():
        reset_clients()
        remote._session.cache_clear()
        seed(n, now)
        counter = CallCounter()
        counter.install()
        for job in ("cleanup", "analytics", "backup-sync"):
            started = time.perf_counter()
            report = run_to_completion(job, load_settings(), now)
            elapsed = time.perf_counter() - started
            assert report.done, f"{job} did not finish"
            calls = counter.take()
            results[job] = (sum(calls.values()), calls, report, elapsed)
    reset_clients()
    return results


def main() -> int:
    configure_environment()
    by_size = {n: run_size(n) for n in SIZES}
    small, large = SIZES
    print(f"AWS calls per image (N = {small:,} and N = {large:,}; {IMAGES_PER_OWNER} images/owner)")
    print(f"{'job':<12} {'calls@' + str(small):>11} {'per image':>10} "
          f"{'calls@' + str(large):>11} {'per image':>10} {'ratio':>7}")  # fmt: skip
    for job in ("cleanup", "analytics", "backup-sync"):
        a = by_size[small][job][0]
        b = by_size[large][job][0]
        ratio = (b / large) / (a / small)
        print(f"{job:<12} {a:>11,} {a / small:>10.3f} {b:>11,} {b / large:>10.3f} {ratio:>7.2f}")
    print()
    for job in ("cleanup", "analytics", "backup-sync"):
        _, calls, report, _ = by_size[large][job]
        top = ", ".join(f"{name} {count}" for name, count in calls.most_common())
        print(f"{job} @ {large:,}: {report.steps} steps; {top}")
        print(f"    counts: {dict(sorted(report.counts.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
