"""`pixflare cron run cleanup|analytics|backup-sync [--now ISO8601]`: a daily job, now.

The job runs in this process against the resolved settings (the local stack at
--endpoint, or the deployed stack's resources), every step until done: the same
logic the scheduled function runs, without its time limit or continuation queue.
"""

from __future__ import annotations

import argparse
from typing import Any

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
        "analytics' day and backup sync's timestamps are all taken from it).",
    )
    run.add_argument("job", choices=JOB_NAMES)
    run.add_argument("--now", metavar="ISO8601", help="run as of this time (default: now, UTC)")
    run.set_defaults(func=run_cron)


def describe(report: RunReport) -> str:
    lines = [f"{report.job} as of {report.now}: {'done' if report.done else 'not finished'}"]
    lines.append(f"  steps: {report.steps}")
    lines.extend(
        f"  {name.replace('_', ' ')}: {value}" for name, value in sorted(report.counts.items())
    )
    if not report.done:
        lines.append("  stopped at the step limit; run it again to carry on")
    return "\n".join(lines)


def run_cron(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        now = parse_now(args.now)
        report = run_to_completion(args.job, ctx.settings, now)
    except PixflareError as err:
        raise CommandError(f"{args.job} failed: {err}") from None
    ctx.emit(report.to_dict(), lambda: describe(report))
    return 0 if report.done else 1
