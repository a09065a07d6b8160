"""A second, separate S3-compatible endpoint: moto's server in a child process.

It stands in for an owner's own bucket (MinIO, Backblaze B2): reached over HTTP,
path-style, with state and credential checks of its own (moto's backends and its
auth switch are process-wide, so it cannot share a process with the local stack).
The child exits when its standard input closes, so it never outlives its parent.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

STARTUP_TIMEOUT_SECONDS = 30
_CHILD = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""


class MotoServerProcess:
    """``start()`` on ``port`` (0: a free one, kept for the next start); ``stop()``."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        # No AWS_* variables: the child must not pick up an endpoint or credentials.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = subprocess.Popen(  # noqa: S603  (our own interpreter and script)
            [sys.executable, "-c", _CHILD, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], STARTUP_TIMEOUT_SECONDS)
        line = self.process.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the S3-compatible server (moto) did not start")
        self.port = int(line)
        return self.endpoint

    def stop(self) -> None:
        """Take the server down, state and all; ``start`` brings it back on the same port."""
        if self.process is None:
            return
        if self.process.stdin:
            self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()
        self.process = None
