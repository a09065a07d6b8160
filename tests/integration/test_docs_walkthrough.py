"""docs/local-stack.md's walkthrough, run as written (issue #18: the docs cannot drift
from the program).

Each ``console`` example runs in order in one working directory through bash, with
the virtualenv's ``bin`` first on PATH (as after ``source .venv/bin/activate``) and no
AWS_* variable from this process. The output must read as the document shows it
(tests/support/walkthrough.py says how ``...`` and ``<NAME>`` read); a command exits
with 0 or the ``# exit N`` its line gives. ``export NAME=VALUE`` sets NAME for the
commands after it, as in a shell.

What this test changes, and why:
- The ports the document uses (4566 and 4567) become free ports, in commands and in
  expected output alike, so a stack already running on this machine is left alone.
- Servers the document starts in another terminal (``<!-- walkthrough: background
  -->``) run in the background until the end; their output is awaited (bounded).
- An example that shows a state reached in the background (``<!-- walkthrough:
  retry -->``) is run again until it reads as shown (bounded), as a reader would.
- ``pixflare local up`` gets PIXFLARE_DNS_NAMESERVERS pointing at a DNS server on
  loopback that knows no names, so the domain worker's checks never leave this
  machine (a reader's stack asks their resolvers).
- photo.jpg and beach.png, which the document asks the reader to bring, are made
  from the demo's samples.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pixflare.local import samples
from tests.support.dns_server import LoopbackDnsServer, TestZone
from tests.support.walkthrough import Captures, Example, examples, match_output

DOC = Path(__file__).resolve().parents[2] / "docs" / "local-stack.md"
DOC_OVERRIDE = os.environ.get("PIXFLARE_WALKTHROUGH_DOC")  # to try a draft
DOCUMENT_PORTS = (4566, 4567)
COMMAND_TIMEOUT_SECONDS = 120  # bounds on a hung command or server, not speed checks
BACKGROUND_READY_SECONDS = 180
RETRY_SECONDS = 60  # a retried example's state is awaited this long at most
RETRY_INTERVAL_SECONDS = 0.5
STOP_SECONDS = 20

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Background:
    example: Example
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def start_reading(self) -> None:
        assert self.process.stdout is not None
        stream = self.process.stdout

        def read() -> None:
            for line in stream:
                self.lines.append(line.rstrip("\n"))

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()


@dataclass
class Reader:
    """A reader at a terminal: one directory, an environment, what they copied."""

    workdir: Path
    env: dict[str, str]
    ports: dict[str, str]
    captures: Captures = field(default_factory=Captures)
    background: list[Background] = field(default_factory=list)

    def localize(self, text: str) -> str:
        for documented, actual in self.ports.items():
            text = re.sub(rf"\b{documented}\b", actual, text)
        return text

    def run(self, example: Example) -> None:
        command = self.localize(self.captures.fill(example.command))
        expected = [self.localize(line) for line in example.expected]
        if export := re.fullmatch(r"export (\w+)=(\S*)", command):
            self.env[export.group(1)] = export.group(2)
            return
        if example.background:
            self._start(example, command, expected)
            return
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            done = subprocess.run(
                ["bash", "-c", command],
                **self._terminal(),
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
            )
            lines = done.stdout.splitlines()
            exited = done.returncode == example.exit_code
            problem = match_output(expected, lines, self.captures) if exited else None
            if exited and problem is None:
                return
            if not example.retry or time.monotonic() > deadline:
                break
            time.sleep(RETRY_INTERVAL_SECONDS)
        assert exited, (
            f"{example} exited {done.returncode}, the document says {example.exit_code}:\n"
            + done.stdout
        )
        raise AssertionError(f"{example} printed what the document does not show:\n{problem}")

    def _terminal(self) -> dict[str, Any]:
        """How a command runs: in the reader's directory and environment, its stdout and
        stderr interleaved as a terminal shows them, nothing to read on stdin."""
        return {
            "cwd": self.workdir,
            "env": self.env,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.STDOUT,
            "stdin": subprocess.DEVNULL,
            "text": True,
        }

    def _start(self, example: Example, command: str, expected: list[str]) -> None:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], **self._terminal(), start_new_session=True
        )
        running = Background(example, process)
        running.start_reading()
        self.background.append(running)
        deadline = time.monotonic() + BACKGROUND_READY_SECONDS
        while time.monotonic() < deadline:
            if match_output(expected, list(running.lines), self.captures) is None:
                return
            if process.poll() is not None and running.reader is not None:
                running.reader.join(5)
                break
            time.sleep(0.2)
        problem = match_output(expected, list(running.lines), self.captures)
        assert problem is None, f"{example} did not print what the document shows:\n{problem}"

    def stop_all(self) -> list[tuple[Example, int | None]]:
        """SIGTERM to each background server, as Ctrl-C in its terminal would be; what
        each exited with (None: it had to be killed)."""
        results: list[tuple[Example, int | None]] = []
        for running in reversed(self.background):
            process = running.process
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                results.append((running.example, process.wait(STOP_SECONDS)))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_SECONDS)
                results.append((running.example, None))
        return results


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    with LoopbackDnsServer(TestZone("example.com")) as dns:
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["PIXFLARE_DNS_NAMESERVERS"] = dns.nameserver
        ports = {str(port): str(free_port()) for port in DOCUMENT_PORTS}
        (tmp_path / "photo.jpg").write_bytes(samples.photo_jpeg())
        (tmp_path / "beach.png").write_bytes(samples.alpha_png())
        walker = Reader(workdir=tmp_path, env=env, ports=ports)
        try:
            yield walker
        finally:
            walker.stop_all()


def test_the_walkthrough_runs_as_written(reader: Reader) -> None:
    steps = examples(Path(DOC_OVERRIDE or DOC).read_text())
    assert steps, "docs/local-stack.md has no console examples"
    for step in steps:
        reader.run(step)
    for example, code in reader.stop_all():
        assert code == 0, f"{example} did not stop cleanly on SIGTERM (exit {code})"
