"""What the black-box tests of the embedded local stack share: starting one for a
module, pointing this process's clients at it, and bounded waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lambdas.shared.aws import reset_clients
from lambdas.shared.config import reset_settings
from pixflare.local.stack import LocalStack
from pixflare.local.synth import synthesize_template

SETTLE_DEADLINE_SECONDS = 90  # a bound on polling loops, not an assertion on speed


@contextmanager
def started_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, **options: Any
) -> Iterator[LocalStack]:
    """A stack from the synthesized template, functions' logs in a file, no schedules,
    and backoff base 0 (a failed record is visible again at once, so a poison message
    walks its receives in well under a second). ``options`` go to LocalStack."""
    settings: dict[str, Any] = {
        "port": 0,
        "env": {"PIXFLARE_BACKOFF_BASE_SECONDS": "0"},
        "log_file": tmp_path_factory.mktemp(name) / "functions.jsonl",
        "run_schedules": False,
        **options,
    }
    if "template" not in settings:
        settings["template"] = synthesize_template()
    with LocalStack(**settings) as running:
        yield running


def use_stack_clients(monkeypatch: pytest.MonkeyPatch, stack: LocalStack) -> None:
    """This process's calls through lambdas.shared.aws go to the stack, never to AWS
    (the functions run in processes of their own and get its endpoint from it)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    reset_clients()
    reset_settings()


def wait_until[T](
    condition: Callable[[], T | None],
    what: str,
    *,
    seconds: float = SETTLE_DEADLINE_SECONDS,
    interval: float = 0.1,
) -> T:
    """``condition()``'s first truthy value, asked every ``interval`` for at most
    ``seconds``; an AssertionError naming ``what`` after that."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}")
