"""How long `pixflare local up` takes to stop on SIGTERM, idle and with warm functions.

Each run starts the real console script (`pixflare local up --port 0`), optionally
uploads N sample images with --wait (so the ingest and variant functions have warm
execution environments, and some may still be running), sends SIGTERM and measures
from the signal to the "stopped" line and to the process's exit. It also counts the
function processes the stack had started that are still alive afterwards (there
should be none).

These are measurements, not tests: nothing here fails a build.

Run: ``python bench/local_stop.py [--runs N] [--uploads N]`` (defaults 3 and 8).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixflare.local import samples  # noqa: E402
from tests.support.processes import alive, descendants  # noqa: E402

PIXFLARE = Path(sys.executable).with_name("pixflare")
READY_SECONDS = 300  # a first start synthesizes the CDK app


def one_run(uploads: int, scratch: Path) -> tuple[float, float, int, int]:
    """(seconds to "stopped", seconds to exit, processes before, left after)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [str(PIXFLARE), "local", "up", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    endpoint = ""
    started = time.monotonic()
    for line in process.stdout:
        if line.startswith("ready: "):
            endpoint = line.split()[-1]
            break
        if time.monotonic() - started > READY_SECONDS:
            break
    if not endpoint:
        process.kill()
        raise SystemExit("local up did not print its ready line")
    stopped_at: list[float] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "stopped":
                stopped_at.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if uploads:
        files = []
        for index in range(uploads):
            sample = samples.demo_samples()[index % 4]
            path = scratch / f"{index}-{sample.filename}"
            path.write_bytes(sample.data)
            files.append(str(path))
        album = f"a{time.time_ns()}"
        subprocess.run(
            [str(PIXFLARE), "upload", *files, "--owner", "bench", "--album", album, "--wait", "60"],
            env={**env, "AWS_ENDPOINT_URL": endpoint},
            capture_output=True,
            check=True,
            timeout=120,
        )
    before = descendants(process.pid)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    exited = time.monotonic()
    reader.join(5)
    time.sleep(0.2)  # orphans, if any, are reparented and still running
    left = sum(1 for pid in before if alive(pid))
    to_stopped = (stopped_at[0] if stopped_at else exited) - signalled
    return to_stopped, exited - signalled, len(before), left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=8)
    options = parser.parse_args()
    print(f"{'case':<22} {'to stopped (s)':>15} {'to exit (s)':>12} {'processes':>10} {'left':>5}")
    with tempfile.TemporaryDirectory(prefix="pixflare-stop-") as tmp:
        for label, uploads in (("idle", 0), (f"{options.uploads} uploads, warm", options.uploads)):
            runs = [one_run(uploads, Path(tmp)) for _ in range(options.runs)]
            for to_stopped, to_exit, before, left in runs:
                print(f"{label:<22} {to_stopped:>15.2f} {to_exit:>12.2f} {before:>10} {left:>5}")
            median_exit = statistics.median(r[1] for r in runs)
            print(f"{label:<22} {'median':>15} {median_exit:>12.2f}")


if __name__ == "__main__":
    main()
