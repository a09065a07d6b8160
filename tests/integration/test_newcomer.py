"""The `pixflare` console script as a newcomer meets it (issue #18): each case runs the
installed script in a process of its own, as a user would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pixflare.local import samples
from pixflare.local.stack import LocalStack
from tests.support.console import on_stack, run


@pytest.mark.parametrize(
    ("args", "env", "named", "suggested"),
    [
        (["--endpoint", "127.0.0.1:4566"], {}, "--endpoint", "http://127.0.0.1:4566"),
        ([], {"AWS_ENDPOINT_URL": "localhost:4566"}, "AWS_ENDPOINT_URL", "http://localhost:4566"),
    ],
)
def test_an_endpoint_without_a_scheme_is_one_line_saying_what_to_write(
    args: list[str], env: dict[str, str], named: str, suggested: str
) -> None:
    done = run(*args, "status", "0123456789abcdef", env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"pixflare: {named} ") and suggested in line


# -- against a running local stack -------------------------------------------------------
@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(port=0, run_schedules=False) as running:
        yield running


def upload_sample(stack: LocalStack, tmp_path: Path, owner: str, album: str) -> str:
    path = tmp_path / "sample.jpg"
    path.write_bytes(samples.demo_samples()[0].data)
    done = on_stack(stack, "--json", "upload", str(path), "--owner", owner, "--album", album)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["imageId"])


def test_analytics_says_which_day_it_rolled_up_and_takes_a_day(
    stack: LocalStack, tmp_path: Path
) -> None:
    image_id = upload_sample(stack, tmp_path, "vera", "a")
    today = datetime.now(UTC).date()
    assert on_stack(stack, "views", "record", image_id, "--count", "3").returncode == 0
    # When analytics runs as of now, it rolls up yesterday, and says so
    done = on_stack(stack, "cron", "run", "analytics")
    assert done.returncode == 0, done.stderr
    assert f"rolled up {today - timedelta(days=1)}" in done.stdout
    # And --day rolls up the day asked for: today's three views
    done = on_stack(stack, "--json", "cron", "run", "analytics", "--day", today.isoformat())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["day"] == today.isoformat()
    stats = on_stack(stack, "--json", "stats", "vera", "--day", today.isoformat())
    assert json.loads(stats.stdout)["views"] == 3


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["cron", "run", "analytics", "--now", "tomorrow"], "--now"),
        (["cron", "run", "analytics", "--day", "2026-13-01"], "--day"),
        (["cron", "run", "cleanup", "--day", "2026-12-01"], "--day"),
    ],
)
def test_a_bad_time_is_an_argument_error_not_a_failed_job(
    stack: LocalStack, args: list[str], named: str
) -> None:
    done = on_stack(stack, *args)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"pixflare: {named}") and "failed" not in line
