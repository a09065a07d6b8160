"""The local stack's EventBridge: scheduled rules invoke their Lambda targets on their
cron or rate expressions, through the same functions and environments as the queues.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pixflare.local.cron import RateSchedule, Schedule, ScheduleError, parse_schedule
from pixflare.local.functions import Invokable
from pixflare.local.template import RuleSpec


@dataclass
class ScheduledRun:
    rule: str
    at: datetime
    ok: bool
    error: str | None = None


class RuleScheduler:
    """Invokes each scheduled EventBridge rule's Lambda targets on its expression."""

    def __init__(
        self,
        rules: list[tuple[RuleSpec, Schedule, list[tuple[Invokable, str | None]]]],
        *,
        stop: threading.Event,
        clock: Callable[[], datetime] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.rules = rules
        self.stop_event = stop
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_error = on_error
        self.started = self.clock()
        self.runs: list[ScheduledRun] = []
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def next_runs(self, after: datetime | None = None) -> list[tuple[RuleSpec, datetime | None]]:
        moment = after or self.clock()
        out: list[tuple[RuleSpec, datetime | None]] = []
        for spec, schedule, _ in self.rules:
            if isinstance(schedule, RateSchedule):
                out.append((spec, schedule.next_after(moment, start=self.started)))
            else:
                out.append((spec, schedule.next_after(moment)))
        return out

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def _loop(self) -> None:
        due = {spec.logical_id: at for spec, at in self.next_runs(self.started)}
        while not self.stop_event.wait(1.0):
            now = self.clock()
            for spec, schedule, targets in self.rules:
                at = due.get(spec.logical_id)
                if at is None or now < at:
                    continue
                for function, payload in targets:
                    self._fire(spec, function, payload, at)
                if isinstance(schedule, RateSchedule):
                    due[spec.logical_id] = schedule.next_after(now, start=self.started)
                else:
                    due[spec.logical_id] = schedule.next_after(now)

    def fire_now(self, logical_id: str) -> list[ScheduledRun]:
        """Run one rule's targets now, as its schedule would (what an operator gets from
        EventBridge's "run now"); KeyError when no rule has that logical id."""
        for spec, _, targets in self.rules:
            if spec.logical_id == logical_id:
                at = self.clock()
                return [self._fire(spec, function, payload, at) for function, payload in targets]
        raise KeyError(f"no scheduled rule {logical_id}")

    def _fire(
        self, spec: RuleSpec, function: Invokable, payload: str | None, at: datetime
    ) -> ScheduledRun:
        event = json.loads(payload) if payload else _scheduled_event(spec, at)
        result = function.invoke(event)
        run = ScheduledRun(spec.logical_id, at, result.ok, result.error)
        self.runs.append(run)
        if not result.ok and self.on_error is not None:
            self.on_error(f"rule {spec.logical_id}: {function.name} failed: {result.error}")
        return run


def _scheduled_event(spec: RuleSpec, at: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": [spec.logical_id],
        "detail": {},
    }


def parse_rule_schedule(spec: RuleSpec) -> Schedule:
    """A rule's parsed expression; ScheduleError names the rule that cannot be read."""
    try:
        return parse_schedule(spec.schedule_expression)
    except ScheduleError as err:
        raise ScheduleError(f"rule {spec.logical_id}: {err}") from None
