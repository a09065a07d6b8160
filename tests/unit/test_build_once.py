"""Builds that two processes need at once (make test's two workers on a fresh clone)
are made once: the second waits for the first and uses its result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from layers import build

JOIN_SECONDS = 30  # a bound on a hung child, not a speed check


CHILD = """
import sys, time
from pathlib import Path
from layers import build

build.BUILD_DIR, dest, log = (Path(arg) for arg in sys.argv[1:4])

def make(tmp):
    with log.open("a") as out:
        out.write("built\\n")
    time.sleep(0.3)  # long enough that the other process arrives meanwhile
    (tmp / "content").write_text("made once")

assert build._build_once(dest, make) == dest
"""


def test_two_processes_needing_one_build_make_it_once(tmp_path: Path) -> None:
    # Given two processes that need the same build at the same moment
    build_dir = tmp_path / "build"
    dest = build_dir / "thing-0123"
    log = tmp_path / "log"
    # When both run
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(build_dir), str(dest), str(log)])
        for _ in range(2)
    ]
    codes = [child.wait(JOIN_SECONDS) for child in children]
    # Then both got it, and it was built once
    assert codes == [0, 0]
    assert log.read_text() == "built\n"
    assert (dest / "content").read_text() == "made once"


def test_a_failed_build_leaves_nothing_and_the_next_one_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "BUILD_DIR", tmp_path / "build")
    dest = tmp_path / "build" / "thing-0123"

    def broken(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("pip failed")

    with pytest.raises(RuntimeError):
        build._build_once(dest, broken)
    assert not dest.exists()
    assert [p.name for p in (tmp_path / "build").iterdir() if not p.name.endswith(".lock")] == []
    assert build._build_once(dest, lambda tmp: (tmp / "ok").write_text("y")) == dest
    assert (dest / "ok").read_text() == "y"
