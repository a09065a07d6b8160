"""`pixflare domain add | status | recheck`: custom domains and their verification.

The logic lives in pixflare.operations.domains; this module only parses and prints.
"""

from __future__ import annotations

import argparse
from typing import Any

from lambdas.shared.config import Settings
from lambdas.shared.errors import PixflareError
from pixflare.context import CommandContext, CommandError
from pixflare.operations.domains import DomainView, add_domain, domain_status, recheck_domain

NOT_DEPLOYED = (
    "custom domains are not deployed: synthesize with "
    "-c customDomainFallbackCname=HOST (the CNAME target users point their domains at) "
    "and deploy again"
)


def deployed(settings: Settings) -> Settings:
    """The settings, if the stack has custom domains; else a CommandError saying how.

    A stack with queues but no domain queue (no DomainQueueUrl output) was synthesized
    without customDomainFallbackCname, which leaves the capability out.
    """
    if settings.enable_queues and not settings.domain_queue_url:
        raise CommandError(NOT_DEPLOYED)
    return settings


def register(subparsers: Any) -> None:
    domain = subparsers.add_parser(
        "domain", help="custom domains: add one, see its verification, check it again"
    )
    commands = domain.add_subparsers(dest="domain_command", metavar="COMMAND", required=True)

    add = commands.add_parser(
        "add",
        help="claim a hostname for an owner and print the two DNS records to create",
        description="Validates the hostname, records it with a fresh verification token and "
        "queues the first check. Adding it again (same owner) prints the same records.",
    )
    add.add_argument("hostname", metavar="HOSTNAME")
    add.add_argument("--owner", required=True)
    add.set_defaults(func=run_add)

    status = commands.add_parser("status", help="a custom domain's verification status")
    status.add_argument("hostname", metavar="HOSTNAME")
    status.set_defaults(func=run_status)

    recheck = commands.add_parser(
        "recheck", help="start a new round of checks for a failed or blocked domain"
    )
    recheck.add_argument("hostname", metavar="HOSTNAME")
    recheck.set_defaults(func=run_recheck)


def _records_text(view: DomainView) -> str:
    records = view.record.dns_records(view.target)
    width = max(len(r["name"]) for r in records)
    return "\n".join(f"  {r['type']:<6} {r['name']:<{width}}  {r['value']}" for r in records)


def _progress_text(view: DomainView) -> str:
    record = view.record
    line = f"{record.hostname}: {record.status} (check {record.checks} of {view.max_checks}"
    line += f", round {record.round})" if record.round > 1 else ")"
    if record.last_error:
        line += f"\n  last result: {record.last_error}"
    if record.config_error:
        line += (
            f"\n  configuration error ({record.config_error_at}): {record.config_error}"
            f"\n  its check was moved to the domain DLQ: {view.config_error_fix}"
        )
    return line


def _human(view: DomainView, *, intro: str, queued_here: bool = False) -> str:
    parts = [intro, _records_text(view), _progress_text(view)]
    if queued_here and view.created and not view.check_enqueued:
        parts.append("  no check was queued (ENABLE_QUEUES is false); add it again to queue one")
    return "\n".join(parts)


def run_add(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        view = add_domain(deployed(ctx.settings), args.hostname, args.owner)
    except PixflareError as err:
        raise CommandError(str(err)) from None
    intro = (
        f"Create these DNS records for {view.record.hostname} at its DNS provider:"
        if view.created
        else f"{view.record.hostname} was already added for {view.record.owner}; its records:"
    )
    ctx.emit(view.to_dict(), lambda: _human(view, intro=intro, queued_here=True))
    return 0


def run_status(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        view = domain_status(deployed(ctx.settings), args.hostname)
    except PixflareError as err:
        raise CommandError(str(err)) from None
    ctx.emit(view.to_dict(), lambda: _human(view, intro="DNS records to create:"))
    return 0


def run_recheck(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        view = recheck_domain(deployed(ctx.settings), args.hostname)
    except PixflareError as err:
        raise CommandError(str(err)) from None
    ctx.emit(view.to_dict(), lambda: _human(view, intro="New round of checks started for:"))
    return 0
