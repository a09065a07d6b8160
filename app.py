#!/usr/bin/env python3
"""CDK entry point (cdk.json: ``python3 app.py``).

Run by the CDK CLI with the project's virtualenv active, or with any python3:
when aws_cdk is not importable, this re-runs itself with ``.venv/bin/python``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

try:
    import aws_cdk  # noqa: F401
except ImportError:
    venv = Path(__file__).resolve().parent / ".venv"
    venv_python = venv / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])  # noqa: S606
    raise SystemExit(
        "aws-cdk-lib is not installed: run `make test` once, or `pip install -e .[infra]`"
    ) from None

from infra.synth import build_app, run_or_exit

# A context that cannot work, or no network for the first layer build: one line, exit 1.
app, _stack = run_or_exit(build_app, prog="app.py")
app.synth()
