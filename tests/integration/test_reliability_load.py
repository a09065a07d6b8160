"""A modest load with faults on the embedded local stack (bench/load.py runs the same with
500 uploads): 30 uploads of mixed sizes and formats through `pixflare upload`, one of
them truncated on purpose, faults at a low rate in the workers' S3 and DynamoDB calls
(injected by an HTTP proxy between the functions and moto), and one image whose original
is unreadable until the faults stop; then `pixflare dlq redrive variant`. The counts
must reconcile exactly and no message may be lost.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pixflare.local.aws_proxy import AwsFaultProxy
from pixflare.local.stack import LocalStack
from pixflare.local.synth import synthesize_template

pytestmark = pytest.mark.slow

UPLOADS = 30
SETTLE_BOUND_SECONDS = 60  # a bound on the waits, not an assertion on speed


def load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "load.py"
    spec = importlib.util.spec_from_file_location("pixflare_bench_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def proxy() -> Iterator[AwsFaultProxy]:
    """Between the functions and moto; its upstream is set once the stack runs."""
    with AwsFaultProxy() as running:
        yield running


@pytest.fixture
def stack(tmp_path: Path, proxy: AwsFaultProxy) -> Iterator[LocalStack]:
    # Backoff base 0: a failed record is visible again at once, so retries (and the
    # walk of the outage image's job to the DLQ) take milliseconds, not minutes.
    with LocalStack(
        port=0,
        template=synthesize_template(),
        env={"PIXFLARE_BACKOFF_BASE_SECONDS": "0"},
        log_file=tmp_path / "functions.jsonl",
        run_schedules=False,
        function_endpoint=proxy.endpoint,
    ) as running:
        proxy.upstream = running.endpoint
        yield running


def test_load_with_faults_on_the_local_stack_reconciles_exactly(
    stack: LocalStack, proxy: AwsFaultProxy
) -> None:
    bench = load_bench()
    broken = sum(1 for i in range(UPLOADS) if bench.is_broken(i))
    outages = sum(1 for i in range(UPLOADS) if bench.is_outage(i))
    assert broken == 1 and outages == 1  # the run below exercises both paths

    # Given 30 uploads while the variant worker's S3 and DynamoDB calls fail now and
    # then, and one image's original cannot be read at all
    # When the stack settles, the faults stop and the DLQ is redriven
    report: Any = bench.run_load(
        stack,
        UPLOADS,
        proxy=proxy,
        fault_rate=0.02,
        seed=11,
        max_side=160,
        settle_seconds=SETTLE_BOUND_SECONDS,
        age_in_progress_markers=True,
    )
    details = "\n".join(report.lines())

    # Then faults did land in the workers (each a refused SDK attempt the worker's SDK
    # saw fail), and the outage image's job reached the DLQ
    assert report.settled_in_time, details
    assert sum(report.faults.values()) > 0, details
    injected = sum(report.faults.values()) + report.outage_faults
    assert sum(v for k, v in report.sdk_retries.items() if k.endswith(" injected")) == injected
    assert report.outage_faults > 0 and report.outage_images == outages, details
    # ... no message was lost: every image still pending had its job in the DLQ,
    # and the redrive moved every job there
    assert report.lost_before_redrive == 0, details
    assert report.redriven == report.dlq_jobs >= outages, details
    # ... and the books balance: ready + failed-with-reason = uploads, exactly the
    # broken files failed, one record and one claim per upload, 9 objects per ready
    # image and the original of each failed one, nothing else, nothing left queued
    assert report.failed == broken and report.failed_without_reason == 0, details
    assert report.ready + report.failed == UPLOADS and report.pending == 0, details
    assert report.records == report.claims == UPLOADS, details
    assert report.stray_records == report.stray_claims == 0, details
    assert report.objects == report.expected_objects == 9 * report.ready + broken, details
    assert report.unexpected_keys == report.missing_keys == 0, details
    assert report.queue_left == report.dlq_left == 0, details
    assert report.stack_errors == 0, details
    assert report.balanced, details
