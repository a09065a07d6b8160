"""`pixflare upload`, `status`, `list`, `delete` and `restore`: what Pixflare's upload
endpoint and image API do, against the resolved stack.

upload validates the names, stores the original, writes the record (claiming the
path) and queues the variant job (and the backup job when the owner has a
destination); with --wait it polls the record until the variants are settled.
delete soft-deletes (restore undoes it); delete --purge removes the image for good
and frees its name (pixflare/operations/images.py). IMAGE_ID may be a unique prefix
of at least 8 characters: pixflare/cli.py resolves it before any command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from lambdas.shared.clock import iso, utcnow
from lambdas.shared.errors import ConditionFailedError, PixflareError
from lambdas.shared.images import ImageRecord, ImageRepository, iso_seconds, purge_due_at
from lambdas.shared.originals import store_upload
from pixflare.context import CommandContext, CommandError
from pixflare.operations.images import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    ImagePage,
    InvalidListCursorError,
    list_images,
    purge_image,
    purge_target,
    restore_image,
)

POLL_SECONDS = 0.25
SETTLED = ("ready", "failed")


def register(subparsers: Any) -> None:
    upload = subparsers.add_parser(
        "upload",
        help="upload images (original stored, variants queued)",
        description="Stores each FILE as {owner}/{album}/{name}/original, writes its record "
        "and queues its variants. Prints one line per FILE, 'FILE -> IMAGE_ID'; with "
        '--json, {"imageId": ...} (a list of them for several files). With --wait, once '
        "the variants are ready or failed, each image's status instead, as `pixflare "
        "status` prints it (with --json, its status document; a list for several files). "
        "Every FILE is read before anything is stored: a missing or empty file, or a "
        "directory, is refused by name.",
    )
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument("--owner", required=True)
    upload.add_argument("--album", required=True)
    upload.add_argument("--name", help="the image's filename in its key (default: FILE's name)")
    upload.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for the variants; exit 1 if they failed or are still pending",
    )
    upload.set_defaults(func=run_upload)

    status = subparsers.add_parser("status", help="an image's record: variants, backup, AI")
    status.add_argument("image_id", metavar="IMAGE_ID")
    status.set_defaults(func=run_status)

    listing = subparsers.add_parser(
        "list",
        help="an owner's images, newest first, a page at a time",
        description="The owner's images (of one album), newest first, deleted ones left out. "
        'With --json: {"images": [status...], "nextCursor": ...}; pass the cursor back with '
        "--cursor for the next page.",
    )
    listing.add_argument("--owner", required=True)
    listing.add_argument("--album")
    listing.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIST_LIMIT,
        help=f"images a page (1-{MAX_LIST_LIMIT}, default {DEFAULT_LIST_LIMIT})",
    )
    listing.add_argument("--cursor", help="where the previous page ended (it prints it)")
    listing.set_defaults(func=run_list)

    delete = subparsers.add_parser(
        "delete",
        help="soft-delete an image (the daily cleanup purges it after the retention); "
        "--purge: remove it for good now",
    )
    delete.add_argument("image_id", metavar="IMAGE_ID")
    delete.add_argument(
        "--purge",
        action="store_true",
        help="remove it now, deleted or not: original, variants, backup and record "
        "(its name is free again); asks on a terminal",
    )
    delete.add_argument(
        "--yes", action="store_true", help="with --purge: do not ask (needed without a terminal)"
    )
    delete.set_defaults(func=run_delete)

    restore = subparsers.add_parser(
        "restore", help="undelete a soft-deleted image (before the daily cleanup purges it)"
    )
    restore.add_argument("image_id", metavar="IMAGE_ID")
    restore.set_defaults(func=run_restore)


class ProgressBar:
    """A one-line bar on stderr, drawn only on a terminal (logs and pipes stay clean)."""

    def __init__(self, stream: TextIO, total: int, label: str) -> None:
        self.stream = stream
        self.total = max(1, total)
        self.label = label
        self.enabled = total > 0 and bool(getattr(stream, "isatty", lambda: False)())
        self.done = 0

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        width = 28
        filled = int(width * min(done, self.total) / self.total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {note}".ljust(79))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _read(path: str) -> bytes:
    """FILE's bytes, or a one-line CommandError that names it."""
    file = Path(path)
    if file.is_dir():
        raise CommandError(
            f"{path} is a directory: name the files in it, e.g. "
            f"pixflare upload {path.rstrip('/')}/*.jpg --owner O --album A"
        )
    if not file.exists():
        raise CommandError(f"{path}: no such file")
    try:
        data = file.read_bytes()
    except OSError as err:
        raise CommandError(f"{path}: {err.strerror or err}") from None
    if not data:
        raise CommandError(f"{path}: the file is empty (nothing was uploaded)")
    return data


def wait_for_variants(
    images: ImageRepository,
    image_ids: list[str],
    seconds: float,
    progress: ProgressBar | None = None,
) -> dict[str, ImageRecord]:
    """Poll until each image's variants are ready or failed, or the time is up."""
    deadline = time.monotonic() + seconds
    latest: dict[str, ImageRecord] = {}
    pending = list(image_ids)
    while True:
        for image_id in list(pending):
            record = images.get(image_id)
            if record is None:
                raise CommandError(f"image {image_id} disappeared while waiting")
            latest[image_id] = record
            if record.variants_status in SETTLED:
                pending.remove(image_id)
        if progress is not None:
            progress.update(len(image_ids) - len(pending), "settled")
        if not pending or time.monotonic() >= deadline:
            return latest
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _describe_status(status: dict[str, Any]) -> str:
    lines = [
        f"{status['imageId']}  {status['owner']}/{status['album']}/{status['filename']}",
        f"  variants: {status['variants_status']}"
        + (f" ({status['error']})" if status.get("error") else ""),
    ]
    for name, info in status.get("variants", {}).items():
        lines.append(
            f"    {name:<9} {info['width']:>5}x{info['height']:<5} {info['bytes']:>9} B  "
            f"{info['content_type']}"
        )
    lines.append(f"  backup: {status.get('backup_status')}")
    ai = status.get("ai")
    if ai and ai.get("error"):
        lines.append(f"  ai: failed ({ai['error']})")
    elif ai:
        labels = ", ".join(str(label.get("name")) for label in ai.get("labels", [])[:8])
        lines.append(f"  ai: {labels or '(no labels)'}")
    if status.get("deleted_at"):
        lines.append(f"  deleted at {status['deleted_at']}")
    return "\n".join(lines)


def run_upload(args: argparse.Namespace, ctx: CommandContext) -> int:
    if args.name and len(args.files) > 1:
        raise CommandError("--name needs exactly one FILE")
    if args.wait is not None and args.wait < 0:
        raise CommandError("--wait must be zero or more seconds")
    # Every file read (or refused by name) before the stack is asked anything.
    payloads = [(path, _read(path)) for path in args.files]
    settings = ctx.settings
    progress = ProgressBar(ctx.stderr, len(payloads) if len(payloads) > 1 else 0, "uploading")
    results: list[dict[str, Any]] = []
    for index, (path, data) in enumerate(payloads):
        name = args.name or Path(path).name
        try:
            upload = store_upload(settings, data, owner=args.owner, album=args.album, filename=name)
        except PixflareError as err:
            if not results:
                raise CommandError(f"{path}: {err}") from None
            # The files before this one are stored: their ids must not be lost with it.
            stored = ", ".join(f"{r['file']} -> {r['imageId']}" for r in results)
            raise CommandError(f"{path}: {err} (already stored: {stored})") from None
        results.append({"imageId": upload.record.image_id, "file": path})
        progress.update(index + 1)
    progress.close()

    failures: list[str] = []
    if args.wait is not None:
        images = ImageRepository(settings.require("images_table"))
        ids = [r["imageId"] for r in results]
        waiting = ProgressBar(ctx.stderr, len(ids), "variants ")
        records = wait_for_variants(images, ids, args.wait, waiting)
        waiting.close()
        results = []
        for image_id in ids:
            record = records[image_id]
            results.append(record.to_status())
            if record.variants_status == "failed":
                failures.append(f"variants of {image_id} failed: {record.error}")
            elif record.variants_status != "ready":
                failures.append(f"variants of {image_id} still pending after {args.wait:g} s")
        human = "\n".join(_describe_status(s) for s in results)
    else:
        for result in results:
            result.pop("file")
        human = "\n".join(
            f"{path} -> {r['imageId']}" for (path, _), r in zip(payloads, results, strict=True)
        )
    ctx.emit(results[0] if len(results) == 1 else results, human)
    for failure in failures:
        ctx.stderr.write(f"pixflare: {failure}\n")
    return 1 if failures else 0


def run_status(args: argparse.Namespace, ctx: CommandContext) -> int:
    image_id: str = args.image_id  # resolved by pixflare.cli.main
    record = ImageRepository(ctx.settings.require("images_table")).get(image_id)
    if record is None:
        raise CommandError(f"no image {image_id}")
    status = record.to_status()
    ctx.emit(status, lambda: _describe_status(status))
    return 0


def run_delete(args: argparse.Namespace, ctx: CommandContext) -> int:
    image_id: str = args.image_id  # resolved by pixflare.cli.main
    if args.purge:
        return _purge(image_id, args, ctx)
    if args.yes:
        raise CommandError("--yes goes with --purge", exit_code=2)
    images = ImageRepository(ctx.settings.require("images_table"))
    at = iso(utcnow())
    try:
        images.soft_delete(image_id, at)
    except ConditionFailedError:
        record = images.get(image_id)
        if record is None:
            raise CommandError(f"no image {image_id}") from None
        raise CommandError(f"image {image_id} was already deleted at {record.deleted_at}") from None
    due = iso_seconds(purge_due_at(at, ctx.settings.soft_delete_retention_days))
    ctx.emit(
        {"imageId": image_id, "deleted_at": at, "purge_after": due},
        f"{image_id} deleted: the first daily cleanup after {due} purges it; "
        f"`pixflare restore {image_id}` undoes it",
    )
    return 0


def confirm(question: str, ctx: CommandContext) -> bool:
    """Ask on the terminal (the question on stderr, the answer from stdin): yes or no."""
    ctx.stderr.write(f"{question} [y/N] ")
    ctx.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _purge(image_id: str, args: argparse.Namespace, ctx: CommandContext) -> int:
    if not args.yes and not sys.stdin.isatty():
        raise CommandError(
            f"delete {image_id} --purge removes it for good: confirm with --yes "
            "(no terminal to ask on)",
            exit_code=2,
        )
    try:
        record = purge_target(ctx.settings, image_id)
        if not args.yes:
            state = f"deleted at {record.deleted_at}" if record.deleted_at else "live, not deleted"
            question = (
                f"purge image {image_id} ({record.owner}/{record.album}/{record.filename}, "
                f"{state}): its original, variants, backup and record, for good?"
            )
            if not confirm(question, ctx):
                raise CommandError("not purged: nothing was removed")
        purged = purge_image(ctx.settings, record)
    except PixflareError as err:
        raise CommandError(str(err)) from None
    backup = " backup," if purged.backup_deleted else ""
    ctx.emit(
        purged.to_dict(),
        f"{image_id} purged ({purged.was} image {record.owner}/{record.album}/"
        f"{record.filename}): its original, variants,{backup} and record are removed; "
        "the name is free",
    )
    return 0


def run_restore(args: argparse.Namespace, ctx: CommandContext) -> int:
    image_id: str = args.image_id  # resolved by pixflare.cli.main
    try:
        restored = restore_image(ctx.settings, image_id)
    except PixflareError as err:
        raise CommandError(str(err)) from None
    record = restored.record
    requeued = "; its variants are queued again" if restored.variant_message_id else ""
    ctx.emit(
        {**record.to_status(), "variantsRequeued": restored.variant_message_id is not None},
        f"{image_id} restored: {record.owner}/{record.album}/{record.filename} is back "
        f"(variants {record.variants_status}, backup {record.backup_status}){requeued}",
    )
    return 0


def _describe_page(page: ImagePage, args: argparse.Namespace) -> str:
    where = args.owner + (f" album {args.album}" if args.album else "")
    if not page.records:
        lines = [f"no {'more ' if args.cursor else ''}images of {where}"]
    else:
        lines = [
            f"{r.image_id}  {r.album}/{r.filename}  "
            f"{'awaiting upload' if r.upload_status == 'awaiting' else r.variants_status}  "
            f"{r.created_at}"
            for r in page.records
        ]
    if page.next_cursor:
        options = f"--owner {args.owner}" + (f" --album {args.album}" if args.album else "")
        if args.limit != DEFAULT_LIST_LIMIT:
            options += f" --limit {args.limit}"
        lines.append(f"next page: pixflare list {options} --cursor {page.next_cursor}")
    return "\n".join(lines)


def run_list(args: argparse.Namespace, ctx: CommandContext) -> int:
    if not 1 <= args.limit <= MAX_LIST_LIMIT:
        raise CommandError(f"--limit must be 1 to {MAX_LIST_LIMIT}", exit_code=2)
    try:
        page = list_images(
            ctx.settings, args.owner, album=args.album, limit=args.limit, cursor=args.cursor
        )
    except InvalidListCursorError as err:
        raise CommandError(str(err), exit_code=2) from None
    except PixflareError as err:
        raise CommandError(str(err)) from None
    ctx.emit(page.to_dict(), lambda: _describe_page(page, args))
    return 0
