"""Metrics: published per invocation, and never kept or printed while disabled."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from lambdas.shared.observability import metrics, publish_metrics


@publish_metrics
def counting_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="Counted", unit=MetricUnit.Count, value=1)
    return {"ok": True}


def test_enabled_metrics_are_printed_once_per_invocation_as_emf(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    assert counting_handler({}, None) == {"ok": True}
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert len(documents) == 1
    assert documents[0]["Counted"] == [1.0]
    assert documents[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Pixflare"


def test_disabled_metrics_are_dropped_not_hoarded_until_powertools_prints_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(150):  # Powertools itself prints a disabled set at 100 values
        counting_handler({}, None)
    assert "Counted" not in capsys.readouterr().out
    assert metrics.metric_set == {}
