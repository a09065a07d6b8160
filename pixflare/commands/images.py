"""`pixflare upload`, `status` and `delete`: what Pixflare's upload endpoint and image
API do, against the resolved stack.

upload validates the names, stores the original, writes the record (claiming the
path) and queues the variant job (and the backup job when the owner has a
destination); with --wait it polls the record until the variants are settled.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, TextIO

from lambdas.shared.clock import iso, utcnow
from lambdas.shared.errors import ConditionFailedError, PixflareError
from lambdas.shared.images import ImageRecord, ImageRepository
from lambdas.shared.keys import validate_image_id
from lambdas.shared.originals import store_upload
from pixflare.context import CommandContext, CommandError

POLL_SECONDS = 0.25
SETTLED = ("ready", "failed")


def register(subparsers: Any) -> None:
    upload = subparsers.add_parser(
        "upload",
        help="upload images (original stored, variants queued)",
        description="Stores each FILE as {owner}/{album}/{name}/original, writes its record "
        'and queues its variants. Prints {"imageId": ...} (a list for several files); '
        "with --wait, the status once the variants are ready or failed.",
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

    delete = subparsers.add_parser(
        "delete", help="soft-delete an image (the daily cleanup purges it after the retention)"
    )
    delete.add_argument("image_id", metavar="IMAGE_ID")
    delete.set_defaults(func=run_delete)


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
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{path}: no such file")
    return file.read_bytes()


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
    settings = ctx.settings
    payloads = [(path, _read(path)) for path in args.files]
    progress = ProgressBar(ctx.stderr, len(payloads) if len(payloads) > 1 else 0, "uploading")
    results: list[dict[str, Any]] = []
    for index, (path, data) in enumerate(payloads):
        name = args.name or Path(path).name
        try:
            upload = store_upload(settings, data, owner=args.owner, album=args.album, filename=name)
        except PixflareError as err:
            if not results:
                raise
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


def _image_id(value: str) -> str:
    try:
        return validate_image_id(value)
    except Exception:
        raise CommandError(f"{value!r} is not an image id (32 lowercase hex characters)") from None


def run_status(args: argparse.Namespace, ctx: CommandContext) -> int:
    image_id = _image_id(args.image_id)
    record = ImageRepository(ctx.settings.require("images_table")).get(image_id)
    if record is None:
        raise CommandError(f"no image {image_id}")
    status = record.to_status()
    ctx.emit(status, lambda: _describe_status(status))
    return 0


def run_delete(args: argparse.Namespace, ctx: CommandContext) -> int:
    image_id = _image_id(args.image_id)
    images = ImageRepository(ctx.settings.require("images_table"))
    at = iso(utcnow())
    try:
        images.soft_delete(image_id, at)
    except ConditionFailedError:
        record = images.get(image_id)
        if record is None:
            raise CommandError(f"no image {image_id}") from None
        raise CommandError(f"image {image_id} was already deleted at {record.deleted_at}") from None
    ctx.emit(
        {"imageId": image_id, "deleted_at": at},
        f"{image_id} deleted (purged by the daily cleanup after the retention period)",
    )
    return 0
