"""`make demo` is the newcomer's first command: it must run every pipeline and say so.

One run of the installed console script with --json: stdout is the one JSON summary,
and stderr carries what `make demo` prints on stdout (the same lines, the same code).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.console import PIXFLARE

pytestmark = pytest.mark.slow

PIPELINES = ("variants", "backup", "domain", "daily jobs", "dlq")
# A bound on a hung demo (a first start synthesizes the CDK app), not on its speed.
DEMO_TIMEOUT_SECONDS = 600


def test_demo_runs_every_pipeline_and_exits_zero() -> None:
    done = subprocess.run(
        [str(PIXFLARE), "demo", "--json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=DEMO_TIMEOUT_SECONDS,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        check=False,
    )
    progress = done.stderr
    assert done.returncode == 0, progress
    # stdout: one JSON document, every pipeline ok
    summary = json.loads(done.stdout)
    assert summary["ok"] is True and summary["workerErrors"] == 0
    assert [p["pipeline"] for p in summary["pipelines"]] == list(PIPELINES)
    assert {p["status"] for p in summary["pipelines"]} == {"ok"}
    assert summary["seconds"] >= sum(p["seconds"] for p in summary["pipelines"]) - 1
    # The progress, as `make demo` shows it: one line per pipeline in its summary
    table = progress.split("== summary", 1)[1].splitlines()
    for pipeline in PIPELINES:
        line = next(row for row in table if row.strip().startswith(pipeline))
        assert line.split()[len(pipeline.split())] == "ok", line
    assert "8 variants each, all ready" in progress
    assert "restored byte for byte" in progress
    assert "purged a month later, with its backup" in progress
    assert "was redriven and finished" in progress
    # One plain line per redriven queue, no Python reprs
    assert "   redrive variant: 1 message(s) back (" in progress
    assert "{'" not in progress
    # It ends saying its stack is gone and how to get one that stays, never pointing
    # the shell at the stopped one
    assert "export AWS_ENDPOINT_URL" not in progress
    last = progress.rstrip().splitlines()[-1]
    assert last.startswith("demo finished in ")
    assert "its local stack has stopped" in last and "`pixflare local up`" in last
