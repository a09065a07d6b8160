"""The README's Deploy section works as written, the way a user runs it: the CDK command
line (`npx aws-cdk@2`) from the checkout's root, with no virtualenv activated (app.py
finds the project's .venv itself). `synth` stands in for `deploy`: it is the same app
run, without an AWS account."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SYNTH_TIMEOUT_SECONDS = 600


def readme_deploy_command() -> list[str]:
    """The README's `npx aws-cdk@2 deploy ...` command, continuation lines joined."""
    section = ROOT.joinpath("README.md").read_text().split("## Deploy", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("npx aws-cdk@2 deploy")]
    return shlex.split(line.split("#", 1)[0])


def user_environment() -> dict[str, str]:
    """A shell as a user has it after `make demo`: no virtualenv on PATH or activated."""
    venv_bin = str(ROOT / ".venv" / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    keep = ("HOME", "PYENV_ROOT", "LANG", "TMPDIR", "NPM_CONFIG_REGISTRY", "PIP_INDEX_URL")
    return {
        **{k: os.environ[k] for k in keep if k in os.environ},
        "PATH": path,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "CDK_DISABLE_VERSION_CHECK": "1",
    }


@pytest.mark.skipif(shutil.which("npx") is None, reason="Node.js (npx) is not installed")
def test_the_readme_deploy_command_synthesizes_with_the_cdk_cli(tmp_path: Path) -> None:
    # Given the README's deploy command, run as synth into a scratch directory
    command = readme_deploy_command()
    assert command[:4] == ["npx", "aws-cdk@2", "deploy", "PixflareJobs"]
    synth = ["npx", "--yes", "aws-cdk@2", "synth", *command[3:], "--quiet", "-o", str(tmp_path)]
    # When a user runs it from the checkout
    done = subprocess.run(
        synth,
        cwd=ROOT,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_SECONDS,
        check=False,
    )
    # Then it succeeds and the template has the workers the README's options ask for
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    template = json.loads((tmp_path / "PixflareJobs.template.json").read_text())
    kinds = [r["Type"] for r in template["Resources"].values()]
    assert kinds.count("AWS::Lambda::Function") >= 6  # + CDK's notifications provider
    assert kinds.count("AWS::ApiGatewayV2::Api") == 1
    mappings = [
        r["Properties"] for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]  # fmt: skip
    # variant, backup, domain (a CNAME target is given), ingest, cron
    assert len(mappings) == 5
    (budget,) = [a.split("=", 1)[1] for a in command if a.startswith("concurrencyBudget=")]
    # The mappings and the daily jobs' scheduled run fit the budget the command gives.
    assert sum(m["ScalingConfig"]["MaximumConcurrency"] for m in mappings) + 1 <= int(budget)
