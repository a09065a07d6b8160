"""Build the Lambda artifacts without Docker: both layers, the code bundle, and (for
the local stack only) the runtime's own client.

- Each layer is installed by pip from its lock file (``layers/<name>/requirements.lock``,
  pinned with hashes by ``make lock``) into ``layers/build/<name>-<machine>-<key>/python``,
  for CPython 3.12 on a machine: ``aarch64`` for AWS, this machine's for the local stack.
  Both builds come from the same lock, so a missing or mismatched package fails here.
- The key hashes the lock, the target and this module's build format, so a second
  synth reuses the first build and a changed pin (direct or transitive) changes the
  asset hash.
- Everything shipped carries ``.pyc`` compiled by CPython 3.12 with
  ``--invalidation-mode unchecked-hash``: /opt and /var/task are read-only on Lambda,
  so without them every cold start compiles every module it imports.
- Builds go to a temporary directory and are moved into place with one
  ``os.rename``; when two processes build the same thing at once (pytest -n 2), the
  loser discards its copy and both use the winner's.

``python -m layers.build`` builds the AWS artifacts and prints their paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS_DIR = ROOT / "layers"
BUILD_DIR = LAYERS_DIR / "build"
LAMBDAS_DIR = ROOT / "lambdas"
DEV_LOCK = ROOT / "requirements" / "dev.lock"

# The functions' target. Keep in step with infra/config.py (runtime, architecture).
PYTHON_VERSION = "3.12"
IMPLEMENTATION = "cp"
# Bump when the way an artifact is laid out changes, so old builds are not reused.
BUILD_FORMAT = "4"
# Where Lambda mounts what we build; written into the .pyc files instead of the build
# directory, so a traceback on AWS names the real path and builds are reproducible.
TASK_ROOT = "/var/task"
OPT_PYTHON = "/opt/python"
PYTHON_OVERRIDE = "PIXFLARE_LAMBDA_PYTHON"


class BuildError(RuntimeError):
    """An artifact could not be built (the message says why and what to do)."""


@dataclass(frozen=True)
class Platform:
    """A Linux machine type and the wheel tags pip may install for it."""

    machine: str  # as `uname -m` says: aarch64, x86_64

    @property
    def tags(self) -> tuple[str, ...]:
        # AL2023 (the python3.12 runtime) has glibc 2.34; manylinux_2_28 is the newest
        # tag every wheel we use publishes, and pip accepts the older ones with it.
        return (f"manylinux2014_{self.machine}", f"manylinux_2_28_{self.machine}")


TARGET = Platform("aarch64")  # arm64 on AWS


def host_platform() -> Platform:
    machine = platform.machine().lower()
    return Platform({"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine))


@dataclass(frozen=True)
class LayerSpec:
    name: str
    lock: Path
    description: str


LAYERS: dict[str, LayerSpec] = {
    "deps": LayerSpec(
        name="deps",
        lock=LAYERS_DIR / "deps" / "requirements.lock",
        description="boto3, Powertools, aws-xray-sdk, pydantic, dnspython, cryptography",
    ),
    "pillow": LayerSpec(
        name="pillow",
        lock=LAYERS_DIR / "pillow" / "requirements.lock",
        description="Pillow and pillow-heif",
    ),
}
# The Lambda Runtime Interface Client (what /var/runtime holds on AWS): the local stack
# loads and invokes each handler with it. Never deployed.
RUNTIME = LayerSpec(
    name="runtime",
    lock=LAYERS_DIR / "runtime" / "requirements.lock",
    description="awslambdaric, the Lambda Runtime Interface Client",
)
_BUILT_NAME = re.compile(r"^(?P<name>[a-z]+)-(?P<machine>[a-z0-9_]+)-(?P<key>[0-9a-f]{16})$")


# -- the interpreter ------------------------------------------------------------------
def _is_python312(candidate: str) -> str | None:
    """The real executable behind ``candidate`` when it runs as CPython 3.12."""
    try:
        done = subprocess.run(  # noqa: S603  (an interpreter we are looking for)
            [
                candidate,
                "-I",
                "-c",
                "import sys, platform; "
                "print(platform.python_implementation(), *sys.version_info[:2], "
                "getattr(sys, '_base_executable', sys.executable))",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or parts[:3] != ["CPython", "3", "12"]:
        return None
    return parts[3]


def python312() -> str:
    """A CPython 3.12 interpreter outside any virtualenv (the functions' runtime).

    PIXFLARE_LAMBDA_PYTHON wins; then this interpreter when it is 3.12; then
    ``python3.12`` on PATH, pyenv's versions and the usual system places.
    """
    return _find_python312(os.environ.get(PYTHON_OVERRIDE, ""))


_found: dict[str, str] = {}


def _find_python312(override: str) -> str:
    if override in _found:
        return _found[override]
    if override:
        found = _is_python312(override)
        if found is None:
            raise BuildError(f"{PYTHON_OVERRIDE}={override} is not a CPython 3.12 interpreter")
        _found[override] = found
        return found
    candidates = []
    if sys.version_info[:2] == (3, 12) and platform.python_implementation() == "CPython":
        candidates.append(getattr(sys, "_base_executable", sys.executable))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [
        *sorted(str(p) for p in pyenv_root.glob("versions/3.12*/bin/python3.12")),
        *(str(Path(d) / "python3.12") for d in os.environ.get("PATH", "").split(os.pathsep)),
        "/usr/local/bin/python3.12",
        "/usr/bin/python3.12",
    ]
    for candidate in candidates:
        if Path(candidate).is_file() and (found := _is_python312(candidate)):
            _found[override] = found
            return found
    raise BuildError(
        "no CPython 3.12 found (the Lambda functions' runtime): install python3.12 "
        f"(pyenv install 3.12, or your distribution's package) or set {PYTHON_OVERRIDE}"
    )


# -- keys -----------------------------------------------------------------------------
def layer_key(spec: LayerSpec, target: Platform = TARGET) -> str:
    """Hash of everything that decides the layer's content: the lock above all."""
    if not spec.lock.is_file():
        raise BuildError(f"{spec.lock.relative_to(ROOT)} is missing: run `make lock`")
    digest = hashlib.sha256()
    digest.update(spec.lock.read_bytes())
    for part in (PYTHON_VERSION, IMPLEMENTATION, *target.tags, BUILD_FORMAT, OPT_PYTHON):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def _code_files() -> list[Path]:
    return sorted(
        path
        for path in LAMBDAS_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def code_key() -> str:
    digest = hashlib.sha256(f"{BUILD_FORMAT}\0{PYTHON_VERSION}\0{TASK_ROOT}".encode())
    for path in _code_files():
        digest.update(b"\0" + path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def content_key(path: Path) -> str:
    """The key a built directory was published under (its name's suffix)."""
    return path.name.rsplit("-", 1)[-1]


# -- steps ----------------------------------------------------------------------------
# What pip says when it cannot reach the index (with --quiet, only the last one).
_OFFLINE_SIGNS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
    "Could not find a version",
)
OFFLINE_HINT = (
    "cannot download wheels from the package index (is the network up?): the first "
    "synth of a clean checkout downloads the layers' wheels from PyPI (or PIP_INDEX_URL)"
)


def _run(cmd: Sequence[str], what: str, *, quiet: bool) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=quiet, text=True)  # noqa: S603
    except subprocess.CalledProcessError as exc:
        detail = [line for line in (exc.stderr or exc.stdout or "").strip().splitlines() if line]
        if any(sign in line for line in detail for sign in _OFFLINE_SIGNS):
            last = detail[-1].removeprefix("ERROR: ") if detail else ""
            raise BuildError(f"{what} failed: {OFFLINE_HINT} (pip: {last})") from exc
        raise BuildError(f"{what} failed: {' | '.join(detail[-5:])}") from exc


def compile_tree(tree: Path, shown_as: str, *, quiet: bool = True) -> None:
    """Write a CPython 3.12 ``.pyc`` next to every module, valid as long as the file is
    shipped unchanged (unchecked-hash: the runtime never compares it with the source)."""
    _run(
        [
            python312(),
            "-I",
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(tree),
            "-p",
            shown_as,
            str(tree),
        ],
        f"compiling {tree.name} with CPython {PYTHON_VERSION}",
        quiet=quiet,
    )


def _pip_install(lock: Path, site: Path, target: Platform, *, quiet: bool) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-deps",
        "--require-hashes",
        *[arg for tag in target.tags for arg in ("--platform", tag)],
        "--implementation",
        IMPLEMENTATION,
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(site),
        "-r",
        str(lock),
    ]
    if quiet:
        cmd.append("--quiet")
    _run(cmd, f"installing {lock.relative_to(ROOT)} for {target.machine}", quiet=quiet)
    bin_dir = site / "bin"
    if bin_dir.is_dir():
        shutil.rmtree(bin_dir)  # console scripts name the build machine's interpreter


def _publish(tmp: Path, dest: Path) -> Path:
    """Move a finished build into place; keep the other process's build if it won."""
    try:
        os.rename(tmp, dest)
    except OSError:
        if not dest.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _scratch(prefix: str) -> Path:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{prefix}-", dir=BUILD_DIR))


@contextlib.contextmanager
def one_at_a_time(lock_path: Path) -> Iterator[None]:
    """Held by one process at a time (an exclusive flock, released if the holder dies),
    so processes that need the same build at once (make test's two workers on a fresh
    clone) make it once: the others wait, then find it made."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_once(dest: Path, build: Callable[[Path], None]) -> Path:
    """``dest``, unless it exists: ``build`` fills a scratch directory that is then moved
    into place; a concurrent build of the same ``dest`` is waited for, not repeated."""
    if dest.is_dir():
        return dest
    with one_at_a_time(BUILD_DIR / f".{dest.name}.lock"):
        if dest.is_dir():
            return dest
        tmp = _scratch(dest.name.split("-", 1)[0])
        try:
            build(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return _publish(tmp, dest)


def build_layer(name: str, target: Platform = TARGET, *, quiet: bool = True) -> Path:
    """Build (or reuse) a layer for ``target``; returns the directory holding ``python/``."""
    spec = LAYERS[name]
    dest = BUILD_DIR / f"{spec.name}-{target.machine}-{layer_key(spec, target)}"

    def build(tmp: Path) -> None:
        site = tmp / "python"
        _pip_install(spec.lock, site, target, quiet=quiet)
        compile_tree(site, OPT_PYTHON, quiet=quiet)

    return _build_once(dest, build)


def build_runtime(*, quiet: bool = True) -> Path:
    """The Runtime Interface Client for this machine (the local stack's /var/runtime)."""
    target = host_platform()
    dest = BUILD_DIR / f"{RUNTIME.name}-{target.machine}-{layer_key(RUNTIME, target)}"

    def build(tmp: Path) -> None:
        _pip_install(RUNTIME.lock, tmp, target, quiet=quiet)
        compile_tree(tmp, "/var/runtime", quiet=quiet)

    return _build_once(dest, build)


def stage_function_code(*, quiet: bool = True) -> Path:
    """The code asset: the ``lambdas`` package (nothing else), compiled.

    The returned directory holds ``lambdas/``, so the handler
    ``lambdas.variant.handler.handler`` imports from the function's root.
    """
    dest = BUILD_DIR / f"code-{code_key()}"

    def build(tmp: Path) -> None:
        shutil.copytree(
            LAMBDAS_DIR,
            tmp / "lambdas",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache"),
        )
        compile_tree(tmp, TASK_ROOT, quiet=quiet)

    return _build_once(dest, build)


# -- the local stack's view of a template's layers -----------------------------------
def layer_for_platform(asset: Path, target: Platform) -> Path:
    """The same layer as the built ``asset`` (a template's layer asset path), built from
    the same lock for ``target``. Refuses an asset built from a lock that has changed
    since: the template is stale and must be synthesized again."""
    match = _BUILT_NAME.match(asset.name)
    if match is None or match["name"] not in LAYERS:
        raise BuildError(f"{asset} is not a layer built by layers/build.py")
    spec = LAYERS[match["name"]]
    if layer_key(spec, Platform(match["machine"])) != match["key"]:
        raise BuildError(f"{asset} was built from an older {spec.lock.name}; synthesize again")
    return build_layer(spec.name, target)


def merge_layers(layers: Sequence[Path]) -> Path:
    """One directory laid out like /opt: each layer's content extracted in order, a later
    layer's file replacing an earlier one's, as Lambda does. Hard links, so it is cheap."""
    digest = hashlib.sha256(BUILD_FORMAT.encode())
    for layer in layers:
        digest.update(b"\0" + layer.name.encode())
    dest = BUILD_DIR / f"opt-{digest.hexdigest()[:16]}"

    def build(tmp: Path) -> None:
        for layer in layers:
            for source in sorted(layer.rglob("*")):
                target = tmp / source.relative_to(layer)
                if source.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)

    return _build_once(dest, build)


def main() -> int:
    try:
        for name in LAYERS:
            print(f"{name}: {build_layer(name, quiet=False)}")
        print(f"code: {stage_function_code(quiet=False)}")
    except BuildError as err:
        print(f"layers.build: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
