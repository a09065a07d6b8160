"""Build and synthesize the CDK app in-process.

- :func:`build_app` is what ``app.py`` (and so ``cdk synth``) runs.
- :func:`synth_template` returns the stack's template as a dict, for the tests and
  the embedded local stack; :func:`nag_findings` returns what cdk-nag and the
  CDK annotations reported. Both synthesize each distinct context once per process.
- ``python -m infra.synth [-c key=value ...]`` writes ``cdk.out`` and prints the
  template's path (context from cdk.json, then ``-c``), exiting 1 on findings.
- A context that cannot work (:class:`infra.config.ContextError`) or a layer that
  cannot be built (:class:`layers.build.BuildError`, e.g. no network on the first
  synth) ends the synth with one line on stderr and exit status 1
  (:func:`run_or_exit`), never a traceback; ``app.py`` does the same under ``cdk``.

No AWS calls happen at synth time: the stack is environment-agnostic and uses no
lookups; layers are built by pip (cached under layers/build/): the first synth of
a clean checkout downloads their wheels from the package index (PyPI).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # after the jsii environment is set
from cdk_nag import AwsSolutionsChecks

from infra import config
from infra.stack import PixflareJobsStack
from layers.build import BuildError

ROOT = Path(__file__).resolve().parent.parent
DISABLE_ASSET_STAGING = "aws:cdk:disable-asset-staging"
ASSET_METADATA = "aws:cdk:enable-asset-metadata"
REPORT_FILE = "validation-report.json"


@dataclass(frozen=True)
class Finding:
    """One cdk-nag violation or CDK annotation (error/warning) left unacknowledged."""

    source: str  # "AwsSolutions" or "annotation"
    rule: str
    severity: str
    path: str
    message: str
    reason: str = ""  # set on acknowledged findings

    def __str__(self) -> str:
        return f"[{self.severity}] {self.rule} at {self.path}: {self.message[:160]}"


@dataclass(frozen=True)
class SynthResult:
    template: dict[str, Any]
    findings: tuple[Finding, ...]  # left unacknowledged: must be empty
    acknowledged: tuple[Finding, ...]  # acknowledged, each with its reason


def cdk_json_context() -> dict[str, Any]:
    """The context (feature flags and defaults) the CDK CLI would read from cdk.json."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text()).get("context", {})
    return context


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    analytics_reporting: bool | None = None,
) -> tuple[cdk.App, PixflareJobsStack]:
    """The app with its one stack and the AwsSolutions checks.

    With ``context=None`` the App reads the CDK CLI's context (cdk.json and ``-c``).
    """
    app = cdk.App(
        context=dict(context) if context is not None else None,
        outdir=outdir,
        analytics_reporting=analytics_reporting,
    )
    settings = config.AppSettings.from_context(
        {key: app.node.try_get_context(key) for key in config.CONTEXT_KEYS}
    )
    stack = PixflareJobsStack(
        app,
        settings.stack_name,
        settings=settings,
        description="Pixflare background jobs: SQS workers, daily jobs, storage",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


# What a synth can fail with that the user fixes: shown as one line, not a traceback.
EXPECTED_FAILURES: tuple[type[Exception], ...] = (config.ContextError, BuildError)


def run_or_exit[T](step: Callable[[], T], *, prog: str = "synth") -> T:
    """``step()``; on an expected failure, its one-line reason on stderr and exit 1."""
    try:
        return step()
    except EXPECTED_FAILURES as err:
        print(f"{prog}: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(1) from None


def info_messages(outdir: Path) -> list[str]:
    """The CDK info annotations (e.g. a capability left out), as the CLI would print them."""
    found: list[str] = []
    manifest = outdir / "manifest.json"
    if not manifest.is_file():
        return found
    for artifact in json.loads(manifest.read_text()).get("artifacts", {}).values():
        for path, entries in artifact.get("metadata", {}).items():
            found.extend(
                f"[info] {path}: {entry.get('data', '')}"
                for entry in entries
                if entry.get("type") == "aws:cdk:info"
            )
    return found


def _synth_into(app: cdk.App) -> None:
    try:
        app.synth()
    except RuntimeError as exc:  # jsii raises the validation failure as RuntimeError
        if "Validation failed" not in str(exc):
            raise


def _read_report(outdir: Path, key: str) -> list[Finding]:
    found: list[Finding] = []
    report = outdir / REPORT_FILE
    if not report.is_file():
        return found
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        for violation in plugin.get(key, []):
            for construct in violation.get("violatingConstructs", []):
                found.append(
                    Finding(
                        source=plugin.get("pluginName", ""),
                        rule=violation.get("ruleName", ""),
                        severity=violation.get("severity", ""),
                        path=construct.get("constructPath", ""),
                        message=violation.get("description", ""),
                        reason=violation.get("reason", ""),
                    )
                )
    return found


def _read_findings(outdir: Path) -> list[Finding]:
    findings = _read_report(outdir, "violations")
    manifest = json.loads((outdir / "manifest.json").read_text())
    for artifact in manifest.get("artifacts", {}).values():
        for path, entries in artifact.get("metadata", {}).items():
            for entry in entries:
                kind = entry.get("type", "")
                if kind in ("aws:cdk:error", "aws:cdk:warning"):
                    findings.append(
                        Finding(
                            source="annotation",
                            rule=kind,
                            severity=kind.rsplit(":", 1)[-1],
                            path=path,
                            message=str(entry.get("data", "")),
                        )
                    )
    return findings


@functools.lru_cache(maxsize=8)
def _synthesize(context_json: str) -> SynthResult:
    context = {
        **cdk_json_context(),
        **json.loads(context_json),
        # Assets stay where layers/build.py put them, and the template says where.
        DISABLE_ASSET_STAGING: True,
        ASSET_METADATA: True,
    }
    with tempfile.TemporaryDirectory(prefix="pixflare-synth-") as tmp:
        app, stack = build_app(context, outdir=tmp, analytics_reporting=False)
        _synth_into(app)
        out = Path(tmp)
        template = json.loads((out / stack.template_file).read_text())
        return SynthResult(
            template=template,
            findings=tuple(_read_findings(out)),
            acknowledged=tuple(_read_report(out, "suppressedViolations")),
        )


def synthesize(context: Mapping[str, Any] | None = None) -> SynthResult:
    result = _synthesize(json.dumps(dict(context or {}), sort_keys=True))
    return SynthResult(
        template=copy.deepcopy(result.template),
        findings=result.findings,
        acknowledged=result.acknowledged,
    )


def synth_template(context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stack's CloudFormation template for this context, as a dict."""
    return synthesize(context).template


def nag_findings(context: Mapping[str, Any] | None = None) -> list[Finding]:
    """Unacknowledged cdk-nag findings and CDK error/warning annotations."""
    return list(synthesize(context).findings)


def _parse_context_args(argv: Sequence[str]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-c", "--context") and args:
            arg = args.pop(0)
        elif arg.startswith("--context="):
            arg = arg.split("=", 1)[1]
        else:
            raise SystemExit(f"usage: python -m infra.synth [-c key=value ...] (got {arg!r})")
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"context must be key=value, got {arg!r}")
        context[key] = value
    return context


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    context = {**cdk_json_context(), **_parse_context_args(args)}
    outdir = ROOT / "cdk.out"
    (outdir / REPORT_FILE).unlink(missing_ok=True)
    app, stack = run_or_exit(lambda: build_app(context, outdir=str(outdir)))
    _synth_into(app)
    for line in info_messages(outdir):
        print(line, file=sys.stderr)
    findings = _read_findings(outdir)
    for finding in findings:
        print(finding, file=sys.stderr)
    print(outdir / stack.template_file)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
