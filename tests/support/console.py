"""Running the installed `pixflare` console script as a user would: a process of its
own, the caller's environment without any AWS_* variable (so nothing reaches AWS),
stdin closed unless given, and a bound on how long it may take."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pixflare.local.stack import LocalStack

PIXFLARE = Path(sys.executable).with_name("pixflare")
COMMAND_TIMEOUT_SECONDS = 60  # a bound on a hung command, not an assertion on speed


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(env or {})
    return subprocess.run(
        [str(PIXFLARE), *args],
        capture_output=True,
        text=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_SECONDS,
        env=environment,
        check=False,
    )


def on_stack(
    stack: LocalStack, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``pixflare --endpoint <the stack> ARGS``."""
    return run("--endpoint", stack.endpoint, *args, env=env, stdin=stdin)


def refused(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one line a refused command printed on stderr (exit ``code``, nothing on stdout)."""
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("pixflare: ")
    return line
