"""Which job a name means, and running one against given settings."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from lambdas.cron.analytics import AnalyticsJob
from lambdas.cron.backup_sync import BackupSyncJob
from lambdas.cron.cleanup import CleanupJob
from lambdas.cron.runner import (
    JOB_NAMES,
    Budget,
    CronJob,
    RunReport,
    queue_continuation,
    run_job,
)
from lambdas.shared.config import Settings
from lambdas.shared.deadline import Deadline, LambdaContextLike
from lambdas.shared.errors import PermanentError


class UnknownJobError(PermanentError):
    """A job name that is not one of the three daily jobs."""


def build_job(
    name: str,
    settings: Settings,
    now: datetime,
    budget: Budget | None = None,
    *,
    day: date | None = None,
) -> CronJob:
    """``day``: analytics only, the day to roll up (default: the day before ``now``)."""
    if day is not None and name != "analytics":
        raise PermanentError(f"a day applies to analytics only, not {name}")
    if name == "cleanup":
        return CleanupJob(settings, now)
    if name == "analytics":
        return AnalyticsJob(settings, now, day=day)
    if name == "backup-sync":
        # Its remote HEADs check the clock themselves: a slow destination is slow per call.
        return BackupSyncJob(settings, now, deadline=budget.deadline if budget else Deadline.none)
    raise UnknownJobError(f"unknown job {name!r}; expected one of {', '.join(JOB_NAMES)}")


def run_in_lambda(
    name: str,
    settings: Settings,
    now: datetime,
    context: LambdaContextLike | None,
    *,
    cursor: Mapping[str, Any] | None = None,
    first_step: int = 1,
) -> RunReport:
    """Run while the invocation has time, then continue through the cron queue."""
    budget = Budget(context)
    return run_job(
        build_job(name, settings, now, budget),
        now=now,
        cursor=cursor,
        first_step=first_step,
        budget=budget,
        continue_with=queue_continuation(settings),
    )


def run_to_completion(
    name: str, settings: Settings, now: datetime, *, day: date | None = None
) -> RunReport:
    """No deadline (the CLI): every step in this process, bounded by the step limit."""
    job = build_job(name, settings, now, day=day)
    report = run_job(job, now=now, budget=Budget(None))
    if isinstance(job, AnalyticsJob):
        report.day = job.day.isoformat()
    return report
