"""What every `pixflare` subcommand is handed: resolved settings and output helpers.

Command modules live in ``pixflare/commands/`` and each exposes
``register(subparsers)``; a subcommand sets ``func=`` to a callable
``(args: argparse.Namespace, ctx: CommandContext) -> int``. The CLI resolves
the settings (from the local stack at ``--endpoint`` / AWS_ENDPOINT_URL, or from
the deployed stack's CloudFormation outputs) before calling it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from lambdas.shared.config import Settings


class CommandError(Exception):
    """A failure the user should read: printed as one line on stderr, exit status 1."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class CommandContext:
    settings: Settings
    endpoint: str | None = None
    json_output: bool = False
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    def emit(self, data: Any, human: str | Callable[[], str] | None = None) -> None:
        """One JSON document with --json; otherwise the human text (or pretty JSON)."""
        if self.json_output or human is None:
            self.stdout.write(
                json.dumps(
                    data, indent=None if self.json_output else 2, sort_keys=False, default=str
                )
                + "\n"
            )
            return
        text = human() if callable(human) else human
        self.stdout.write(text.rstrip("\n") + "\n")

    def info(self, message: str) -> None:
        """Progress for people: on stderr, so --json output stays one document."""
        self.stderr.write(message.rstrip("\n") + "\n")
