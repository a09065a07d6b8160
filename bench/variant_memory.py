"""Peak memory of the whole variant handler path, to size the variant function.

    python bench/variant_memory.py            # 24 MP JPEG, 12 MP PNG (RGB and RGBA)
    python bench/variant_memory.py --limit    # and 100 MP inputs, the default pixel limit

A moto server runs in this process on 127.0.0.1 (port chosen by the OS) with the
project's tables, bucket and queues. For each input below this process uploads the
image with store_upload (record + original + job on the queue) and receives the job;
a fresh child process then imports the handler, as a Lambda cold start does, and
runs it on that SQS event over HTTP: GetItem, GetObject, render, eight PutObjects,
UpdateItem, and (with AI on) the downscale and Rekognition call (moto's canned one).

Reported per run, from the child's /proc/self/status: RSS after imports, the peak
RSS while the handler ran (VmHWM, reset with /proc/self/clear_refs just before the
call, so it is the peak of this call on top of everything already loaded), and the
growth between the two. The handler runs twice in each child: the first call is the
cold one; the second renders the same image again under a fresh job so allocator
reuse shows (a warm container keeps its heap).

These are measurements, not tests: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------
# Child: one cold "invocation" (plus one warm one) of the real handler.


def run_child(event_files: list[str], out_file: str) -> None:
    rss_start = proc_status_kib("VmRSS")
    from lambdas.variant.handler import handler
    from tests.support.events import FakeLambdaContext

    rss_imported = proc_status_kib("VmRSS")
    runs: list[dict[str, Any]] = []
    for event_file in event_files:
        event = json.loads(Path(event_file).read_text())
        peak_reset = reset_peak()
        rss_before = proc_status_kib("VmRSS")
        started = time.perf_counter()
        response = handler(event, FakeLambdaContext(remaining_ms=30_000, memory_limit_in_mb=3008))
        seconds = time.perf_counter() - started
        runs.append(
            {
                "response": response,
                "seconds": round(seconds, 3),
                "rss_before_kib": rss_before,
                "peak_kib": proc_status_kib("VmHWM"),
                "rss_after_kib": proc_status_kib("VmRSS"),
                "peak_reset": peak_reset,
            }
        )
    Path(out_file).write_text(
        json.dumps({"rss_start_kib": rss_start, "rss_imported_kib": rss_imported, "runs": runs})
    )


# --------------------------------------------------------------------------
# Parent: moto server, inputs, uploads, children, the table.


def photo_like(width: int, height: int, mode: str, noise: float, seed: int, cell: int = 60) -> Any:
    """Smooth colour regions (one random colour per ``cell`` pixels) plus grain:
    compresses roughly like a photograph."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    small = (max(2, width // cell), max(2, height // cell))
    channels = len(mode)
    base = Image.frombytes(mode, small, rng.randbytes(small[0] * small[1] * channels))
    base = base.resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.effect_noise((width, height), 64).convert(mode)
    if mode == "RGBA":
        grain.putalpha(255)
    return Image.blend(base, grain, noise)


def make_inputs(quick: bool, limit: bool) -> list[tuple[str, bytes]]:
    from PIL import Image

    scale = 4 if quick else 1
    jpeg_w, jpeg_h = 6000 // scale, 4000 // scale
    png_w, png_h = 4000 // scale, 3000 // scale
    inputs = []

    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone photo held upright: stored sideways, rotated on display
    photo_like(jpeg_w, jpeg_h, "RGB", 0.12, 1).save(out, "JPEG", quality=92, exif=exif)
    inputs.append((f"JPEG {jpeg_w}x{jpeg_h} ({jpeg_w * jpeg_h / 1e6:.0f} MP)", out.getvalue()))

    for mode in ("RGB", "RGBA"):
        out = io.BytesIO()
        photo_like(png_w, png_h, mode, 0.05, 2).save(out, "PNG", compress_level=6)
        label = f"PNG {mode} {png_w}x{png_h} ({png_w * png_h / 1e6:.0f} MP)"
        inputs.append((label, out.getvalue()))
    if limit:
        # At the default pixel limit (MAX_IMAGE_PIXELS, 100 MP): what the function must survive.
        out = io.BytesIO()
        photo_like(12240, 8160, "RGB", 0.05, 3).save(out, "JPEG", quality=92)
        inputs.append(("JPEG 12240x8160 (100 MP)", out.getvalue()))
        # Smooth, no grain: a grainy 100 MP PNG is over the 100 MB upload limit.
        out = io.BytesIO()
        photo_like(10000, 10000, "RGBA", 0.0, 4, cell=2500).save(out, "PNG")
        inputs.append(("PNG RGBA 10000x10000 (100 MP)", out.getvalue()))
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quarter-size inputs")
    parser.add_argument(
        "--limit", action="store_true", help="also 100 MP inputs (the default pixel limit)"
    )
    parser.add_argument("--child", nargs="+", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[:-1], args.child[-1])
        return

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    base_env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "pixflare-variant-bench",
        "POWERTOOLS_METRICS_NAMESPACE": "Pixflare",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    os.environ.update(base_env)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)

    from lambdas.shared.config import settings_from_env
    from lambdas.shared.messages import VariantJob
    from lambdas.shared.originals import store_upload
    from tests.support.aws_resources import create_resources, receive_all
    from tests.support.events import event_from_received

    resources = create_resources()
    print(f"moto server on {host}:{port}; child python {sys.version.split()[0]}")
    print(
        f"{'input':<34} {'file MB':>8} {'AI':>3} {'imports MB':>10} "
        f"{'cold peak MB':>12} {'cold +MB':>8} {'cold s':>7} {'warm peak MB':>12} {'warm s':>7}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (label, data) in enumerate(make_inputs(args.quick, args.limit)):
            for ai_on in (False, True):
                env = {
                    **os.environ,
                    **resources.env("variant"),
                    "ENABLE_AI_CLASSIFICATION": "true" if ai_on else "false",
                }
                settings = settings_from_env(env)
                events = []
                for attempt in ("cold", "warm"):
                    record = store_upload(
                        settings,
                        data,
                        owner="bench",
                        album="memory",
                        filename=f"input{n}-ai{int(ai_on)}-{attempt}",
                    ).record
                    messages = receive_all(resources.queue_urls["variant"])
                    assert len(messages) == 1, messages
                    assert VariantJob.model_validate_json(messages[0]["Body"]).image_id == (
                        record.image_id
                    )
                    event_file = Path(tmp, f"event-{n}-{int(ai_on)}-{attempt}.json")
                    event_file.write_text(
                        json.dumps(event_from_received(messages, resources.queue_arns["variant"]))
                    )
                    events.append(str(event_file))
                out_file = Path(tmp, f"out-{n}-{int(ai_on)}.json")
                subprocess.run(
                    [sys.executable, __file__, "--child", *events, str(out_file)],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                child = json.loads(out_file.read_text())
                cold, warm = child["runs"]
                for run in child["runs"]:
                    assert run["response"] == {"batchItemFailures": []}, run["response"]
                    assert run["peak_reset"], "could not reset VmHWM; peaks would be wrong"
                imported = child["rss_imported_kib"] / 1024
                row = {
                    "input": label,
                    "file_mb": round(len(data) / MB, 1),
                    "ai": ai_on,
                    "imports_mb": round(imported),
                    "cold_peak_mb": round(cold["peak_kib"] / 1024),
                    "cold_growth_mb": round((cold["peak_kib"] - cold["rss_before_kib"]) / 1024),
                    "cold_seconds": cold["seconds"],
                    "warm_peak_mb": round(warm["peak_kib"] / 1024),
                    "warm_seconds": warm["seconds"],
                }
                results.append(row)
                print(
                    f"{label:<34} {row['file_mb']:>8} {'on' if ai_on else 'off':>3} "
                    f"{row['imports_mb']:>10} {row['cold_peak_mb']:>12} "
                    f"{row['cold_growth_mb']:>8} {row['cold_seconds']:>7} "
                    f"{row['warm_peak_mb']:>12} {row['warm_seconds']:>7}"
                )
    server.stop()
    worst = max(max(r["cold_peak_mb"], r["warm_peak_mb"]) for r in results)
    print(f"\nworst peak RSS of the handler process: {worst} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
