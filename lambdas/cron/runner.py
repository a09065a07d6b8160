"""The time-budgeted job runner shared by the three daily jobs.

A job is a sequence of bounded steps over a cursor (a small JSON object). The
runner runs steps while there is time; near the end of the function's time it
stops between steps and sends a CronContinuation carrying the cursor to the cron
queue, whose consumer (the same function) picks the job up where it stopped.
From the CLI there is no deadline: the runner loops until the job is done,
bounded by a step limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from lambdas.shared import aws
from lambdas.shared.clock import iso
from lambdas.shared.config import Settings
from lambdas.shared.deadline import Deadline, LambdaContextLike
from lambdas.shared.errors import PermanentError
from lambdas.shared.messages import CronContinuation
from lambdas.shared.observability import logger
from lambdas.shared.producers import send

JobName = Literal["cleanup", "analytics", "backup-sync"]
JOB_NAMES: tuple[JobName, ...] = ("cleanup", "analytics", "backup-sync")

# Another step is started only if, after a step as long as the longest so far, the
# continuation send can still be made with the AWS client's full timeouts: its worst
# case (20 s) and the report margin, 21 s.
STEP_MARGIN_SECONDS = aws.seconds_needed(aws.AWS_TIMEOUTS[0])
# The message model caps the step number; a chain this long means a runaway job.
MAX_STEP = 100_000


@dataclass(frozen=True)
class StepResult:
    """What one step did: the cursor to resume from (None when the job is done) and counts."""

    cursor: dict[str, Any] | None
    counts: Mapping[str, int] = field(default_factory=dict)


class CronJob(Protocol):
    name: JobName

    def step(self, cursor: Mapping[str, Any]) -> StepResult: ...


@dataclass
class RunReport:
    job: str
    now: str
    done: bool
    steps: int
    first_step: int
    counts: Counter[str] = field(default_factory=Counter)
    cursor: dict[str, Any] | None = None
    continuation_message_id: str | None = None
    # analytics: the day it rolled up (the day before `now` unless asked for another).
    day: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "now": self.now,
            **({"day": self.day} if self.day else {}),
            "done": self.done,
            "steps": self.steps,
            "counts": dict(sorted(self.counts.items())),
            "cursor": self.cursor,
            "continuation": self.continuation_message_id,
        }


class InvalidTimeError(PermanentError):
    """A `now` that is not an ISO 8601 time."""


def parse_now(value: str | None, *, default: datetime | None = None) -> datetime:
    """ISO 8601 (a trailing Z or an offset; a bare time counts as UTC) -> aware UTC datetime."""
    if value is None or value == "":
        return (default or datetime.now(UTC)).astimezone(UTC)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidTimeError(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Budget:
    """Whether another step fits: the invocation's deadline must leave room for a step
    as long as the longest seen so far in this invocation and the margin; and a step
    limit. Without a Lambda context (the CLI) there is no deadline."""

    def __init__(
        self,
        context: LambdaContextLike | None = None,
        *,
        margin_seconds: float = STEP_MARGIN_SECONDS,
        max_steps: int = MAX_STEP,
    ) -> None:
        self.context = context
        self.margin_seconds = margin_seconds
        self.max_steps = max_steps
        self.longest_step_seconds = 0.0
        self._last_left: float | None = None

    def deadline(self) -> Deadline:
        return Deadline.from_context(self.context)

    def allows_another_step(self, steps_done: int) -> bool:
        if steps_done >= self.max_steps:
            return False
        deadline = self.deadline()
        left = deadline.seconds_left()
        if left is None:
            return True
        if self._last_left is not None:
            self.longest_step_seconds = max(self.longest_step_seconds, self._last_left - left)
        self._last_left = left
        # The first step of an invocation always runs: a fresh invocation has its
        # whole timeout, and refusing it would send continuations that never progress.
        if steps_done == 0:
            return True
        return deadline.fits(self.longest_step_seconds + self.margin_seconds)


Continue = Callable[[CronContinuation], str | None]


def run_job(
    job: CronJob,
    *,
    now: datetime,
    cursor: Mapping[str, Any] | None = None,
    first_step: int = 1,
    budget: Budget,
    continue_with: Continue | None = None,
) -> RunReport:
    """Run steps while the budget allows; when it runs out, hand the cursor on.

    ``continue_with`` sends the continuation (None from the CLI, which has no
    deadline and simply runs again until done).
    """
    report = RunReport(job=job.name, now=iso(now), done=False, steps=0, first_step=first_step)
    position: dict[str, Any] = dict(cursor or {})
    while budget.allows_another_step(report.steps):
        result = job.step(position)
        report.steps += 1
        report.counts.update(result.counts)
        if result.cursor is None:
            report.done = True
            report.cursor = None
            logger.info(
                "cron job done",
                extra={"job": job.name, "steps": report.steps, "counts": dict(report.counts)},
            )
            return report
        position = result.cursor
    report.cursor = position
    next_step = first_step + report.steps
    if continue_with is not None and next_step <= MAX_STEP:
        message = CronContinuation(job=job.name, now=report.now, cursor=position, step=next_step)
        report.continuation_message_id = continue_with(message)
        logger.info(
            "cron job paused, continuation sent",
            extra={"job": job.name, "nextStep": next_step, "counts": dict(report.counts)},
        )
    else:
        logger.warning(
            "cron job paused without a continuation; the next run picks it up",
            extra={"job": job.name, "nextStep": next_step, "counts": dict(report.counts)},
        )
    return report


def queue_continuation(settings: Settings) -> Continue | None:
    """Send continuations to the cron queue, or None when this deployment has none."""
    queue_url = settings.cron_queue_url
    if not queue_url:
        return None

    def send_continuation(message: CronContinuation) -> str | None:
        return send(queue_url, message)

    return send_continuation
