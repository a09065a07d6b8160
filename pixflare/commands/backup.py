"""`pixflare backup set | show | restore | verify`: an owner's backup destination and its copies.

The secret access key is read from standard input (``--secret-access-key-stdin``,
the documented way) or from PIXFLARE_BACKUP_SECRET_ACCESS_KEY, so it never appears
in the process list or in shell history; ``--secret-access-key S`` still works but
warns. It is checked against the destination and stored KMS-encrypted; no command
prints it back.

``set`` then brings the owner's images along: each one not backed up at this
destination (uploaded before it was set, or backed up to one it replaces) is
queued for backup, and ``show`` counts where the owner's images stand.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from lambdas.shared.destinations import DestinationCredentials, DestinationRepository
from lambdas.shared.errors import PixflareError
from pixflare.context import CommandContext, CommandError
from pixflare.operations.backup_destinations import (
    DestinationRequest,
    backfill_destination,
    backup_progress,
    configure_destination,
)
from pixflare.operations.backup_restore import TargetExistsError, restore_backup, verify_backup

SECRET_ENV = "PIXFLARE_BACKUP_SECRET_ACCESS_KEY"  # noqa: S105  (a variable name)
ARGUMENT_WARNING = (
    "warning: --secret-access-key puts the secret in the process list and in shell "
    f"history; pipe it to --secret-access-key-stdin or set {SECRET_ENV} instead"
)


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser(
        "backup", help="each owner's backup destination; restore and verify backups"
    )
    commands = backup.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)

    set_parser = commands.add_parser(
        "set",
        help="check and save an owner's S3-compatible backup destination",
        description="Checks the destination with a small write, read and delete, saves "
        "it with the credentials encrypted by KMS, then queues the owner's images that "
        "are not backed up there yet (set again with the same options: only those).",
    )
    set_parser.add_argument("--owner", required=True)
    # Not the global --endpoint (the local stack): this is the owner's storage service.
    set_parser.add_argument(
        "--endpoint",
        dest="destination_endpoint",
        metavar="URL",
        required=True,
        help="S3-compatible endpoint, e.g. http://127.0.0.1:9000; empty for AWS S3",
    )
    set_parser.add_argument("--bucket", required=True)
    set_parser.add_argument("--access-key-id", required=True)
    secret = set_parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-access-key-stdin",
        action="store_true",
        help="read the secret access key from standard input (the way to give it)",
    )
    secret.add_argument(
        "--secret-access-key",
        metavar="SECRET",
        help=f"the secret itself (visible in the process list and shell history: prefer "
        f"--secret-access-key-stdin or {SECRET_ENV}); - reads standard input",
    )
    set_parser.add_argument("--region", default="")
    set_parser.add_argument("--prefix", default="", help="key prefix inside the bucket")
    set_parser.add_argument(
        "--path-style", action="store_true", help="path-style addressing (MinIO and most others)"
    )
    set_parser.add_argument(
        "--encrypt", action="store_true", help="encrypt each object before it leaves AWS"
    )
    set_parser.set_defaults(func=run_set)

    show = commands.add_parser(
        "show",
        help="an owner's destination (never the secret) and how many images are backed up",
    )
    show.add_argument("--owner", required=True)
    show.set_defaults(func=run_show)

    restore = commands.add_parser(
        "restore", help="read an image's backup back, check it and write it to a file"
    )
    restore.add_argument("image_id", metavar="IMAGE_ID")
    restore.add_argument("--to", dest="to", metavar="FILE", required=True, type=Path)
    restore.add_argument("--force", action="store_true", help="replace FILE if it exists")
    restore.set_defaults(func=run_restore)

    verify = commands.add_parser(
        "verify", help="read an image's backup and compare it with the image, writing nothing"
    )
    verify.add_argument("image_id", metavar="IMAGE_ID")
    verify.set_defaults(func=run_verify)


def _secret(args: argparse.Namespace, ctx: CommandContext) -> str:
    """The secret: standard input, else the environment, else (warned) the argument."""
    value: str | None = args.secret_access_key
    if args.secret_access_key_stdin or value == "-":
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            raise CommandError("no secret access key on standard input")
        return secret
    if value is not None:
        ctx.info(ARGUMENT_WARNING)
        return value
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise CommandError(
            f"no secret access key: pipe it to --secret-access-key-stdin or set {SECRET_ENV}"
        )
    return secret


def run_set(args: argparse.Namespace, ctx: CommandContext) -> int:
    request = DestinationRequest(
        owner=args.owner,
        bucket=args.bucket,
        credentials=DestinationCredentials(
            access_key_id=args.access_key_id,
            secret_access_key=SecretStr(_secret(args, ctx)),
        ),
        endpoint_url=args.destination_endpoint,
        region=args.region,
        prefix=args.prefix,
        path_style=args.path_style,
        encrypt=args.encrypt,
    )
    try:
        saved = configure_destination(ctx.settings, request)
    except PixflareError as err:
        raise CommandError(f"backup destination not saved: {err}") from None
    public = saved.to_public()
    saved_line = (
        f"backup destination for {saved.owner} saved: {public['endpoint']} "
        f"bucket {saved.bucket} prefix {saved.prefix or '(none)'}"
        f"{' (encrypted)' if saved.encrypt else ''}; test write, read and delete passed"
    )
    if not ctx.settings.enable_queues:
        ctx.emit(
            {**public, "checked": True, "queued": 0, "alreadyBackedUp": 0},
            f"{saved_line}\nqueues are off (ENABLE_QUEUES=false): no images queued for backup",
        )
        return 0
    queued = 0

    def count(round_queued: int) -> None:
        nonlocal queued
        queued += round_queued

    try:
        backfill = backfill_destination(ctx.settings, saved, lambda r: count(r.queued))
    except PixflareError as err:
        raise CommandError(
            f"backup destination saved, but queueing the owner's images stopped after "
            f"{queued}: {err}; run the same `pixflare backup set` again to queue the rest"
        ) from None
    already = f" ({backfill.backed_up} already backed up there)" if backfill.backed_up else ""
    ctx.emit(
        {
            **public,
            "checked": True,
            "queued": backfill.queued,
            "alreadyBackedUp": backfill.backed_up,
        },
        f"{saved_line}\nqueued {_images(backfill.queued)} for backup{already}",
    )
    return 0


def _images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


PROGRESS_LABELS = {
    "backedUp": "backed up",
    "queued": "queued or in progress",
    "failed": "failed",
    "notYet": "not yet queued",
}


def show_lines(public: dict[str, Any], progress: dict[str, int]) -> list[str]:
    """`backup show` for people: plain values, defaults said as such."""
    lines = [
        f"owner: {public['owner']}",
        f"endpoint: {public['endpoint']}",
        f"region: {public['region'] or '(default)'}",
        f"bucket: {public['bucket']}",
        f"prefix: {public['prefix'] or '(none)'}",
        f"path-style: {'yes' if public['pathStyle'] else 'no'}",
        f"encrypted: {'yes' if public['encrypt'] else 'no'}",
        f"access key id: {public['accessKeyId']}",
        f"set: {public['createdAt']}, last changed {public['updatedAt']}",
        "images: " + ", ".join(f"{progress[k]} {label}" for k, label in PROGRESS_LABELS.items()),
    ]
    if progress["failed"]:
        lines.append(
            "  failed: `pixflare status IMAGE_ID` shows why; once fixed, "
            "`pixflare backup set` again (same options) queues them"
        )
    if progress["notYet"]:
        lines.append(
            "  not yet queued: `pixflare backup set` again (same options) queues them "
            "(a set that stopped part way is finished by the next daily backup sync)"
        )
    return lines


def run_show(args: argparse.Namespace, ctx: CommandContext) -> int:
    try:
        destination = DestinationRepository(ctx.settings.require("destinations_table")).get(
            args.owner
        )
        if destination is None:
            raise CommandError(f"owner {args.owner} has no backup destination")
        progress = backup_progress(ctx.settings, destination)
    except PixflareError as err:
        raise CommandError(str(err)) from None
    public = destination.to_public()
    ctx.emit({**public, "images": progress}, lambda: "\n".join(show_lines(public, progress)))
    return 0


def run_restore(args: argparse.Namespace, ctx: CommandContext) -> int:
    image_id: str = args.image_id  # resolved by pixflare.cli.main
    target: Path = args.to
    try:
        check = restore_backup(ctx.settings, image_id, target, overwrite=args.force)
    except TargetExistsError as err:
        raise CommandError(f"{err.path} exists; pass --force to overwrite it") from None
    except PixflareError as err:
        raise CommandError(f"restore failed, nothing written: {err}") from None
    ctx.emit(
        {**check.to_dict(), "file": str(target)},
        f"restored {image_id} to {target}: {check.size} bytes, SHA-256 {check.sha256} matches",
    )
    return 0


def run_verify(args: argparse.Namespace, ctx: CommandContext) -> int:
    image_id: str = args.image_id  # resolved by pixflare.cli.main
    try:
        check = verify_backup(ctx.settings, image_id)
    except PixflareError as err:
        raise CommandError(f"backup of {image_id} failed verification: {err}") from None
    ctx.emit(
        check.to_dict(),
        f"backup of {image_id} at {check.bucket}/{check.key} matches: "
        f"{check.size} bytes, SHA-256 {check.sha256}"
        f"{', decrypted' if check.encrypted else ''}",
    )
    return 0
