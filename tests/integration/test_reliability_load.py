"""A modest load with faults (bench/load.py runs the same with 500 uploads): 40 uploads of
mixed sizes and formats, a few broken on purpose, S3 / DynamoDB faults at a low rate; the
counts must reconcile exactly.

This runs over in-process moto and the real handler through the queue driver, not on
the embedded local stack (pixflare.local), which was still being finished when this
was written; the reconciliation is the same either way.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lambdas.shared import worker
from tests.conftest import use_env
from tests.support.aws_resources import Resources


def load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "load.py"
    spec = importlib.util.spec_from_file_location("pixflare_bench_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_load_with_faults_reconciles_exactly(
    aws: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "BACKOFF_BASE_SECONDS", 0)
    use_env(monkeypatch, aws.env("variant"))
    bench = load_bench()
    bench.use_resources(aws)

    report = bench.run_load(40, fault_rate=0.03, seed=11, max_side=160)

    assert sum(report.faults.values()) > 0, "no fault was injected"
    assert report.failed == 40 // bench.BROKEN_EVERY  # exactly the broken files
    assert report.uploads == report.ready + report.failed
    assert report.failed_without_reason == 0 and report.pending == 0
    assert report.objects == report.expected_objects == 9 * report.ready + report.failed
    assert report.duplicate_keys == 0 and report.unexpected_keys == 0
    assert report.queue_left == 0 and report.dlq_left == 0
    assert report.balanced
