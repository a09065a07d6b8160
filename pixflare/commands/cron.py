"""`pixflare cron run cleanup|analytics|backup-sync [--now ISO8601]`: a daily job, now.

The job runs in this process against the resolved settings (the local stack at
--endpoint, or the deployed stack's resources), every step until done: the same
logic the scheduled function runs, without its time limit or continuation queue.
"""

from __future__ import annotations

import argparse
from typing import Any

from lambdas.cron.analytics import parse_day
from lambdas.cron.registry import run_to_completion
from lambdas.cron.runner import JOB_NAMES, RunReport, parse_now
from lambdas.shared.errors import PixflareError
from pixflare.context import CommandContext, CommandError


def register(subparsers: Any) -> None:
    cron = subparsers.add_parser("cron", help="the daily jobs (cleanup, analytics, backup sync)")
    commands = cron.add_subparsers(dest="cron_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run a daily job now, to completion",
        description="Runs the job in this process against the stack's resources. "
        "--now runs it as of another moment (cleanup's retention and grace period, "
        "analytics' day and backup sync's timestamps are all taken from it). Analytics "
        "rolls up the day BEFORE --now (the scheduled run at 02:00 UTC rolls up "
        "yesterday); --day names the day to roll up instead.",
    )
    run.add_argument("job", choices=JOB_NAMES)
    run.add_argument(
        "--now",
        metavar="ISO8601",
        help="run as of this time, e.g. 2026-12-02T10:00:00Z (default: now, UTC)",
    )
    run.add_argument(
        "--day",
        metavar="YYYY-MM-DD",
        help="analytics only: the day to roll up (default: the day before --now)",
    )
    run.set_defaults(func=run_cron)


def describe(report: RunReport) -> str:
    lines = [f"{report.job} as of {report.now}: {'done' if report.done else 'not finished'}"]
    if report.day:
        lines.append(f"  rolled up {report.day}")
    lines.append(f"  steps: {report.steps}")
    lines.extend(
        f"  {name.replace('_', ' ')}: {value}" for name, value in sorted(report.counts.items())
    )
    if not report.done:
        lines.append("  stopped at the step limit; run it again to carry on")
    return "\n".join(lines)


def run_cron(args: argparse.Namespace, ctx: CommandContext) -> int:
    # Argument mistakes are usage errors (exit 2), not a failed job.
    try:
        now = parse_now(args.now)
    except PixflareError as err:
        raise CommandError(f"--now: {err} (e.g. 2026-12-02T10:00:00Z)", exit_code=2) from None
    day = None
    if args.day is not None:
        if args.job != "analytics":
            raise CommandError("--day applies to analytics only", exit_code=2)
        try:
            day = parse_day(args.day)
        except PixflareError as err:
            raise CommandError(f"--day: {err}", exit_code=2) from None
    try:
        report = run_to_completion(args.job, ctx.settings, now, day=day)
    except PixflareError as err:
        raise CommandError(f"{args.job} failed: {err}") from None
    ctx.emit(report.to_dict(), lambda: describe(report))
    return 0 if report.done else 1
