"""Build the Lambda layers and the function code bundle without Docker.

Each layer is installed by pip for the functions' target (CPython 3.12 on
arm64, manylinux wheels only) into ``layers/build/<name>-<key>/python``. The key
is a hash of the requirements file, the target and this module's build format,
so a second synth reuses the first build. Builds go to a temporary directory
and are moved into place with one ``os.rename``; when two processes build the
same layer at once (pytest -n 2), the loser discards its copy and both use the
winner's.

``python -m layers.build`` builds both layers and the code bundle and prints
their paths.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS_DIR = ROOT / "layers"
BUILD_DIR = LAYERS_DIR / "build"
LAMBDAS_DIR = ROOT / "lambdas"

# The functions' target. Keep in step with infra/config.py (runtime, architecture).
PYTHON_VERSION = "3.12"
IMPLEMENTATION = "cp"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
# Bump when the way a layer is laid out changes, so old builds are not reused.
BUILD_FORMAT = "3"

# Distributions the Lambda Python runtime already provides. aws-xray-sdk depends
# on botocore, so pip brings a copy; a layer's copy would sit ahead of the
# runtime's on sys.path and pair the runtime's boto3 with a different botocore.
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python_dateutil",
    "dateutil",
    "six",
    "urllib3",
)


@dataclass(frozen=True)
class LayerSpec:
    name: str
    requirements: Path
    description: str


LAYERS: dict[str, LayerSpec] = {
    "deps": LayerSpec(
        name="deps",
        requirements=LAYERS_DIR / "deps" / "requirements.txt",
        description="Powertools, aws-xray-sdk, pydantic, dnspython, cryptography",
    ),
    "pillow": LayerSpec(
        name="pillow",
        requirements=LAYERS_DIR / "pillow" / "requirements.txt",
        description="Pillow and pillow-heif",
    ),
}


def layer_key(spec: LayerSpec) -> str:
    """Hash of everything that decides the layer's content."""
    digest = hashlib.sha256()
    digest.update(spec.requirements.read_bytes())
    for part in (PYTHON_VERSION, IMPLEMENTATION, *PLATFORMS, BUILD_FORMAT, *RUNTIME_PROVIDED):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def _prune(site: Path) -> None:
    """Drop what the runtime provides, byte code and console scripts."""
    for entry in list(site.iterdir()):
        name = entry.name.lower()
        if name.endswith(".dist-info"):
            name = name.split("-", 1)[0]
        elif name.endswith(".py"):
            name = name[: -len(".py")]
        if name in RUNTIME_PROVIDED:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    bin_dir = site / "bin"
    if bin_dir.is_dir():
        shutil.rmtree(bin_dir)
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def _publish(tmp: Path, dest: Path) -> Path:
    """Move a finished build into place; keep the other process's build if it won."""
    try:
        os.rename(tmp, dest)
    except OSError:
        if not dest.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build_layer(name: str, *, quiet: bool = True) -> Path:
    """Build (or reuse) a layer; returns the directory holding ``python/``."""
    spec = LAYERS[name]
    dest = BUILD_DIR / f"{spec.name}-{layer_key(spec)}"
    if dest.is_dir():
        return dest
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.name}-", dir=BUILD_DIR))
    site = tmp / "python"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-compile",
        *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
        "--implementation",
        IMPLEMENTATION,
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(site),
        "-r",
        str(spec.requirements),
    ]
    if quiet:
        cmd.append("--quiet")
    try:
        subprocess.run(cmd, check=True, capture_output=quiet, text=True)  # noqa: S603
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        detail = (exc.stderr or "").strip().splitlines()[-5:]
        raise RuntimeError(f"building layer {name!r} failed: {' | '.join(detail)}") from exc
    _prune(site)
    return _publish(tmp, dest)


def _code_key() -> str:
    digest = hashlib.sha256(BUILD_FORMAT.encode())
    for path in sorted(_code_files()):
        digest.update(b"\0" + path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _code_files() -> list[Path]:
    return [
        path
        for path in LAMBDAS_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def stage_function_code() -> Path:
    """Copy the ``lambdas`` package (nothing else) into a build directory.

    The returned directory holds ``lambdas/``, so the handler
    ``lambdas.variant.handler.handler`` imports from the function's root.
    """
    dest = BUILD_DIR / f"code-{_code_key()}"
    if dest.is_dir():
        return dest
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-code-", dir=BUILD_DIR))
    shutil.copytree(
        LAMBDAS_DIR,
        tmp / "lambdas",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache"),
    )
    return _publish(tmp, dest)


def content_key(path: Path) -> str:
    """The key a built directory was published under (its name's suffix)."""
    return path.name.rsplit("-", 1)[-1]


def main() -> int:
    for name in LAYERS:
        print(f"{name}: {build_layer(name, quiet=False)}")
    print(f"code: {stage_function_code()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
