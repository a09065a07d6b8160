"""The CDK template the local stack builds from, synthesized in a child process.

A child process keeps jsii's Node.js kernel out of the long-running stack (it
would otherwise live, and complain at exit, for the stack's whole life). The
result is cached under $XDG_CACHE_HOME/pixflare/templates (~/.cache/pixflare/templates
when XDG_CACHE_HOME is unset or empty), keyed on everything that shapes the template:
the infra/ sources, app.py, cdk.json, the context and the CDK version. Change a batch
size in infra/ and the key changes with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from layers.build import one_at_a_time

ROOT = Path(__file__).resolve().parents[2]
SYNTH_TIMEOUT_SECONDS = 600
# A context that cannot work or a layer that cannot be built: one line, exit 1.
_SCRIPT = (
    "import json, sys\n"
    "from infra.synth import run_or_exit, synth_template\n"
    "context = json.loads(sys.argv[1])\n"
    "sys.stdout.write(json.dumps(run_or_exit(lambda: synth_template(context))))\n"
)
# The local stack deploys custom domains too (a deployed stack needs the operator's own
# `-c customDomainFallbackCname=...`); a reserved .localhost name nobody can claim. With
# them the stack has five event source mappings: 5 x SQS's minimum 2, plus the scheduled
# runs, is 11, over the default budget of 10 (there is no account limit here).
# Backup destinations here are loopback HTTP servers (a second moto, say): the opt-in a
# deployed stack leaves off (docs/reliability.md) is on, and the stack says so.
LOCAL_CONTEXT: dict[str, Any] = {
    "customDomainFallbackCname": "edge.pixflare.localhost",
    "concurrencyBudget": "12",
    "backupAllowPrivateEndpoints": "true",
}


class SynthError(RuntimeError):
    """The CDK app did not synthesize (the message carries its last error line)."""


def cdk_context(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """cdk.json's context (what `cdk deploy` uses), then the local defaults
    (:data:`LOCAL_CONTEXT`), then the caller's overrides."""
    context: dict[str, Any] = {}
    cdk_json = ROOT / "cdk.json"
    if cdk_json.is_file():
        context.update(json.loads(cdk_json.read_text()).get("context", {}))
    context.update(LOCAL_CONTEXT)
    context.update(overrides or {})
    return context


def _cache_key(context: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    # The template holds absolute paths to this checkout's artifacts: a second
    # checkout (CI's clone) must build and use its own.
    digest.update(str(ROOT).encode() + b"\0")
    digest.update(json.dumps(context, sort_keys=True).encode())
    try:
        digest.update(metadata.version("aws-cdk-lib").encode())
    except metadata.PackageNotFoundError:
        digest.update(b"no-cdk")
    # The template names the artifacts' build directories, whose names hash the lambdas
    # sources and the layer locks: a change there is a new template too.
    sources = [
        ROOT / "app.py",
        ROOT / "cdk.json",
        ROOT / "layers" / "build.py",
        *sorted((ROOT / "layers").glob("*/requirements.lock")),
        *sorted((ROOT / "infra").rglob("*.py")),
        *sorted(p for p in (ROOT / "lambdas").rglob("*.py") if "__pycache__" not in p.parts),
    ]
    for path in sources:
        if path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def asset_paths(template: Mapping[str, Any]) -> list[str]:
    """The local directories the template's functions and layers are built from."""
    return [
        resource["Metadata"]["aws:asset:path"]
        for resource in template.get("Resources", {}).values()
        if "aws:asset:path" in resource.get("Metadata", {})
    ]


def cache_dir() -> Path:
    """Where synthesized templates are kept (the XDG base directory convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixflare" / "templates"


def cached_template_path(overrides: Mapping[str, Any] | None = None) -> Path:
    """The cache file of the template for this checkout and context (it may not exist)."""
    return cache_dir() / f"{_cache_key(cdk_context(overrides))}.json"


def synthesize_template(
    overrides: Mapping[str, Any] | None = None, *, use_cache: bool = True
) -> dict[str, Any]:
    if not (ROOT / "infra" / "synth.py").is_file():
        raise SynthError(
            f"no CDK app at {ROOT} (infra/synth.py); run from a checkout or pass --template FILE"
        )
    context = cdk_context(overrides)
    cached = cached_template_path(overrides)
    if not use_cache:
        return _synthesize(context, cached, use_cache=False)
    # One synthesis per template at a time: a process that waited reads the cache. (A
    # cache directory that cannot be written only costs another synth, unlocked.)
    with contextlib.ExitStack() as held:
        with contextlib.suppress(OSError):
            held.enter_context(one_at_a_time(cached.with_suffix(".lock")))
        return _synthesize(context, cached, use_cache=True)


def _synthesize(context: Mapping[str, Any], cached: Path, *, use_cache: bool) -> dict[str, Any]:
    if use_cache and cached.is_file():
        try:
            document: dict[str, Any] = json.loads(cached.read_text())
            if all(Path(path).is_dir() for path in asset_paths(document)):
                return document
            cached.unlink(missing_ok=True)  # its artifacts were cleaned: build them again
        except (OSError, json.JSONDecodeError):
            cached.unlink(missing_ok=True)
    env = {**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    try:
        done = subprocess.run(  # noqa: S603  (our own interpreter and script)
            [sys.executable, "-c", _SCRIPT, json.dumps(context)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SYNTH_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SynthError(f"cdk synth took longer than {SYNTH_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and "!!" not in line]
        raise SynthError(f"cdk synth failed: {lines[-1] if lines else 'no output'}")
    template: dict[str, Any] = json.loads(done.stdout)
    if use_cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(template))
            partial.replace(cached)
        except OSError:
            pass  # a read-only home only costs the next start another synth
    return template
