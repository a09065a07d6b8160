"""The arrows between the rooms point one way (docs/internals.md, "Rooms"): what runs in
Lambda imports nothing of the operator's tools or the CDK app, so its code asset can
hold ``lambdas/`` alone."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"lambdas", "infra", "pixflare", "layers", "tests", "bench"}
# room -> the project packages (or modules) it may import
ALLOWED: dict[str, set[str]] = {
    "lambdas": {"lambdas"},
    "layers": set(),
    "infra": {"infra", "lambdas", "layers"},
    # infra.config only for the stack's default name, and only where the CDK app is there.
    "pixflare": {"pixflare", "lambdas", "layers", "infra.config"},
}


def project_imports(path: Path) -> set[str]:
    """Every imported project module, as a dotted name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(n for n in names if n.split(".")[0] in PROJECT_PACKAGES)
    return found


def room_files(room: str) -> list[Path]:
    """The room's sources, not what layers/build.py made (copies and installed packages)."""
    found = []
    for directory, subdirectories, files in os.walk(ROOT / room):
        subdirectories[:] = [d for d in subdirectories if d not in ("build", "__pycache__")]
        found += [Path(directory) / name for name in files if name.endswith(".py")]
    return found


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_what_its_arrows_allow(room: str) -> None:
    allowed = ALLOWED[room]
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in room_files(room)
        for name in project_imports(path)
        if name.split(".")[0] not in allowed and name not in allowed
    }
    assert not wrong, sorted(wrong)


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "handler.py"
    module.write_text("from pixflare.operations.uploads import upload_image\nimport infra.config\n")
    assert project_imports(module) == {"pixflare.operations.uploads", "infra.config"}
