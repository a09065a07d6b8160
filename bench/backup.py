"""Backup throughput and memory: our streaming backup, plain and encrypted, against a boto3 copy.

    python bench/backup.py                 # a 256 MiB original
    python bench/backup.py --size-mib 32   # smaller, quicker

Two moto servers on loopback, each in its own process: one stands in for AWS
(the images bucket and KMS), the other for the owner's S3-compatible destination
(path-style, its own credentials). One random original of the given size is
stored in the images bucket, then copied to the destination three ways, each in
a fresh child process so its peak RSS (ru_maxrss) is its own:

- copy:      what an operator would write with boto3: download_file to a temp
             file, then upload_file (boto3's managed transfers, default settings)
- plain:     lambdas.backup.pipeline.stream_backup, no encryption (the backup
             function's code path: GetObject stream -> multipart upload, 8 MiB
             parts, 3 in flight, SHA-256 checked before commit)
- encrypted: the same with our streaming AEAD and a KMS data key

Reported: seconds, MiB/s, ratio to the copy's throughput, peak RSS. The aims
(docs/backup-format.md): encrypted >= 0.8 x copy throughput, peak RSS < 160 MB.
These are measurements, not tests: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from tests.support.s3_target import S3Target  # noqa: E402

MIB = 1024 * 1024
SOURCE_BUCKET = "pixflare-images"
SOURCE_KEY = "bench/album/original.bin/original"
VARIANTS = ("copy", "plain", "encrypted")


def _aws_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


# -- child: one variant, measured ---------------------------------------------------------


def run_child(args: argparse.Namespace) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": args.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "BACKUP_KMS_KEY_ID": args.kms_key_id,
        }
    )
    target_key = f"bench/{args.child}"
    # Imports and clients are made before the clock starts: only the transfer is timed.
    if args.child == "copy":
        source = _aws_client("s3", args.aws_endpoint)
        target = _aws_client("s3", args.target_endpoint)
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "original")
            source.download_file(SOURCE_BUCKET, SOURCE_KEY, path)
            target.upload_file(path, args.target_bucket, target_key)
    else:
        from lambdas.backup.pipeline import new_encryption_key, stream_backup
        from lambdas.backup.remote import remote_client
        from lambdas.shared import aws
        from lambdas.shared.config import load_settings
        from lambdas.shared.destinations import Destination, DestinationCredentials
        from lambdas.shared.endpoint_policy import EndpointPolicy

        destination = Destination(
            owner="bench", bucket=args.target_bucket, endpoint_url=args.target_endpoint,
            path_style=True, encrypt=args.child == "encrypted",
        )  # fmt: skip
        credentials = DestinationCredentials("bench", SecretStr("bench"))
        source_client = aws.s3()
        aws.kms()
        # The target is a loopback HTTP server: the policy the local stack uses allows it.
        allowed = EndpointPolicy(allow_private=True, allow_http=True)
        target_client = remote_client(destination, credentials, allowed)
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        # The data key is part of the job: one KMS call per object.
        encryption = (
            new_encryption_key(load_settings(), "bench", "0" * 32) if destination.encrypt else None
        )
        stream_backup(
            source=source_client,
            source_bucket=SOURCE_BUCKET,
            source_key=SOURCE_KEY,
            target=target_client,
            target_bucket=args.target_bucket,
            target_key=target_key,
            image_id="0" * 32,
            content_type="application/octet-stream",
            expected_sha256=args.sha256,
            encryption=encryption,
        )
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_kib * 1024 / 1e6,
                "baseline_rss_mb": baseline_kib * 1024 / 1e6,
            }
        )
    )


# -- parent: servers, the original, the table ----------------------------------------------


def make_original(client: Any, size: int) -> str:
    """A random original of ``size`` bytes in the images bucket; returns its SHA-256."""
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile() as handle:
        remaining = size
        while remaining:
            chunk = os.urandom(min(8 * MIB, remaining))
            digest.update(chunk)
            handle.write(chunk)
            remaining -= len(chunk)
        handle.flush()
        client.upload_file(handle.name, SOURCE_BUCKET, SOURCE_KEY)
    return digest.hexdigest()


def measure(variant: str, common: list[str]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", variant, *common],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (best kept)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--aws-endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--target-endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--target-bucket", help=argparse.SUPPRESS)
    parser.add_argument("--kms-key-id", help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    size = args.size_mib * MIB
    with (
        S3Target(bucket=SOURCE_BUCKET, auth=False) as aws_side,
        S3Target(bucket="owner-backups", auth=False) as target,
    ):
        s3 = _aws_client("s3", aws_side.endpoint)
        print(f"storing a {args.size_mib} MiB original ...", file=sys.stderr)
        sha256 = make_original(s3, size)
        key_id = _aws_client("kms", aws_side.endpoint).create_key()["KeyMetadata"]["KeyId"]
        common = [
            "--aws-endpoint", aws_side.endpoint,
            "--target-endpoint", target.endpoint,
            "--target-bucket", target.bucket,
            "--kms-key-id", key_id,
            "--sha256", sha256,
        ]  # fmt: skip
        results: dict[str, dict[str, float]] = {}
        for variant in VARIANTS:
            runs = []
            for _ in range(max(1, args.repeat)):
                runs.append(measure(variant, common))
                target.client().delete_object(Bucket=target.bucket, Key=f"bench/{variant}")
            results[variant] = {
                "seconds": min(r["seconds"] for r in runs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "baseline_rss_mb": max(r["baseline_rss_mb"] for r in runs),
            }
            print(f"  {variant}: {results[variant]['seconds']:.2f} s", file=sys.stderr)

    copy_rate = args.size_mib / results["copy"]["seconds"]
    print(f"\nbackup of a {args.size_mib} MiB original, moto servers on loopback\n")
    print(
        f"{'variant':<10} {'seconds':>8} {'MiB/s':>8} {'x copy':>7} {'peak RSS MB':>12} "
        f"{'before transfer':>16}"
    )
    for variant in VARIANTS:
        r = results[variant]
        rate = args.size_mib / r["seconds"]
        print(
            f"{variant:<10} {r['seconds']:>8.2f} {rate:>8.1f} {rate / copy_rate:>7.2f} "
            f"{r['peak_rss_mb']:>12.1f} {r['baseline_rss_mb']:>16.1f}"
        )
    encrypted_ratio = (args.size_mib / results["encrypted"]["seconds"]) / copy_rate
    worst_rss = max(results["plain"]["peak_rss_mb"], results["encrypted"]["peak_rss_mb"])
    print(
        f"\naim: encrypted >= 0.80 x copy -> {encrypted_ratio:.2f} "
        f"({'met' if encrypted_ratio >= 0.8 else 'NOT met'}); "
        f"peak RSS < 160 MB -> {worst_rss:.1f} ({'met' if worst_rss < 160 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
