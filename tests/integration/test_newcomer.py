"""The `pixflare` console script as a newcomer meets it (issue #18): each case runs the
installed script in a process of its own, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PIXFLARE = Path(sys.executable).with_name("pixflare")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(env or {})
    return subprocess.run(  # noqa: S603  (the project's own console script)
        [str(PIXFLARE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


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
