"""Cold starts from the deployment artifacts: each function's Init Duration on CPython
3.12, next to a bare handler that only imports boto3 and makes one client, with and
without the shipped .pyc.

Every run is a fresh execution environment of the local stack (a CPython 3.12
process under the real Runtime Interface Client, the code asset and the layers
built from their locks for this machine), so Init Duration is measured exactly as
the local stack's REPORT line gives it: from the process start until the runtime
asks for its first event (the handler module is imported by then). Without .pyc
means the same artifacts with every ``__pycache__`` removed, as shipped before, and
run with -B like Lambda's read-only /var/task and /opt: every cold start compiles.

These are measurements, not tests: nothing here fails a build. Lambda gives a
function 1 vCPU at 1,769 MB and proportionally less below that, so the last column
scales this machine's figure (one core busy during init) to the function's share.

Run: ``python bench/cold_start.py [--runs N]`` (default 7).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.config import CRON, WORKERS  # noqa: E402
from layers import build  # noqa: E402
from pixflare.local.environments import FunctionEnvironments, FunctionImage  # noqa: E402

FULL_VCPU_MB = 1769
BARE_HANDLER = '''"""The least a Python function that talks to AWS does at init."""
import boto3

client = boto3.client("s3")


def handler(event, context):
    return {}
'''


@dataclass(frozen=True)
class Subject:
    name: str
    handler: str
    memory_mb: int
    layers: tuple[str, ...]
    service: str


def subjects() -> list[Subject]:
    found = [Subject("bare (boto3 + 1 client)", "bare.handler", 512, ("deps",), "bare")]
    for spec in (*WORKERS, CRON):
        layers = ("deps", "pillow") if spec.key == "variant" else ("deps",)
        found.append(Subject(spec.key, spec.handler, spec.memory_mb, layers, spec.service))
    return found


def strip_pyc(tree: Path, into: Path) -> Path:
    """A copy of ``tree`` without any .pyc (hard links: cheap, and the source is safe
    because nothing here writes into it)."""
    shutil.copytree(tree, into, copy_function=os.link, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def cold_starts(subject: Subject, image: FunctionImage, runs: int) -> list[float]:
    """Init Duration (ms) of ``runs`` fresh environments."""
    inits: list[float] = []
    for _ in range(runs):
        environments = FunctionEnvironments(
            name=f"bench-{subject.service}",
            arn=f"arn:aws:lambda:us-east-1:123456789012:function:bench-{subject.service}",
            handler=subject.handler,
            timeout_seconds=30,
            memory_mb=4096,  # measure init, never kill it: the share is applied below
            image=image,
            environment={
                "POWERTOOLS_SERVICE_NAME": subject.service,
                "POWERTOOLS_METRICS_NAMESPACE": "Pixflare",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                # Nothing answers here: the invocation's outcome is not measured.
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            },
            region="us-east-1",
        )
        try:
            # An empty batch: the handler may refuse it; only the init is measured.
            result = environments.invoke({"Records": []})
        finally:
            environments.close()
        report = result.report
        if report is None or report.init_duration_ms is None:
            raise SystemExit(f"{subject.name}: no Init Duration ({result.error})")
        inits.append(report.init_duration_ms)
    return inits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="cold starts per figure")
    args = parser.parse_args()

    host = build.host_platform()
    python = Path(build.python312())
    runtime_dir = build.build_runtime()
    layer_dirs = {name: build.build_layer(name, host) for name in build.LAYERS}
    code = build.stage_function_code()
    print(f"python {python}, {host.machine}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{args.runs} cold starts per figure; Init Duration in ms (median / max)\n")

    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        scratch = Path(tmp)
        bare = scratch / "bare"
        bare.mkdir()
        (bare / "bare.py").write_text(BARE_HANDLER)
        build.compile_tree(bare, build.TASK_ROOT)
        trees = {
            "pyc": {"code": code, "bare": bare, **layer_dirs},
            "no pyc": {
                "code": strip_pyc(code, scratch / "code-nopyc"),
                "bare": strip_pyc(bare, scratch / "bare-nopyc"),
                **{n: strip_pyc(d, scratch / f"{n}-nopyc") for n, d in layer_dirs.items()},
            },
        }
        results: dict[tuple[str, str], list[float]] = {}
        # Interleaved (pyc, no pyc) per subject, so a change in machine load hits both.
        for subject in subjects():
            for mode, tree in trees.items():
                opt = scratch / f"opt-{mode.replace(' ', '')}-{'-'.join(subject.layers)}"
                if not opt.exists():
                    opt.mkdir()
                    for layer in subject.layers:
                        shutil.copytree(tree[layer], opt, copy_function=os.link, dirs_exist_ok=True)
                task_root = tree["bare"] if subject.service == "bare" else tree["code"]
                image = FunctionImage(
                    python=python, task_root=task_root, opt_dir=opt, runtime_dir=runtime_dir
                )
                started = time.monotonic()
                results[(subject.name, mode)] = cold_starts(subject, image, args.runs)
                took = time.monotonic() - started
                print(f"  measured {subject.name:<26} {mode:<6} in {took:.1f} s", file=sys.stderr)

    bare_pyc = statistics.median(results[(subjects()[0].name, "pyc")])
    header = (
        f"{'function':<26} {'MB':>5} {'with .pyc':>15} {'without .pyc':>15} "
        f"{'x bare':>7} {'.pyc gain':>9} {'at its MB':>10}"
    )
    print(header)
    print("-" * len(header))
    for subject in subjects():
        with_pyc = results[(subject.name, "pyc")]
        without = results[(subject.name, "no pyc")]
        median_pyc, median_no = statistics.median(with_pyc), statistics.median(without)
        share = max(1.0, FULL_VCPU_MB / subject.memory_mb)
        print(
            f"{subject.name:<26} {subject.memory_mb:>5} "
            f"{median_pyc:>7.0f} / {max(with_pyc):>5.0f} {median_no:>7.0f} / {max(without):>5.0f} "
            f"{median_pyc / bare_pyc:>7.2f} {median_no / median_pyc:>8.2f}x "
            f"{median_pyc * share:>8.0f} ms"
        )
    print(
        "\nx bare: median with .pyc / the bare handler's median with .pyc (aim: at most 2)."
        "\nat its MB: the median with .pyc scaled to the function's vCPU share "
        f"({FULL_VCPU_MB} MB = 1 vCPU), an estimate of its cold start on AWS."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
