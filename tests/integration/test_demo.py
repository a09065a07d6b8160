"""`make demo` is the newcomer's first command: it must run every pipeline and say so."""

from __future__ import annotations

import io

import pytest

from pixflare.cli import main

pytestmark = pytest.mark.slow

PIPELINES = ("variants", "backup", "domain", "daily jobs", "dlq")


def test_demo_runs_every_pipeline_and_exits_zero() -> None:
    out, err = io.StringIO(), io.StringIO()

    code = main(["demo"], stdout=out, stderr=err)

    text = out.getvalue()
    assert code == 0, text + err.getvalue()
    summary = text.split("== summary", 1)[1].splitlines()
    for pipeline in PIPELINES:
        line = next(row for row in summary if row.strip().startswith(pipeline))
        assert line.split()[len(pipeline.split())] == "ok", line
    assert "8 variants each, all ready" in text
    assert "restored byte for byte" in text
    assert "purged a month later, with its backup" in text
    assert "was redriven and finished" in text
