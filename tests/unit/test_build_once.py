"""Builds that two processes need at once (make test's two workers on a fresh clone)
are made once: the second waits for the first and uses its result."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from layers import build

JOIN_SECONDS = 30  # a bound on a hung child, not a speed check


def build_in_child(dest: Path, log: Path) -> None:
    def make(tmp: Path) -> None:
        with log.open("a") as out:
            out.write("built\n")
        time.sleep(0.3)  # long enough that the other process arrives meanwhile
        (tmp / "content").write_text("made once")

    assert build._build_once(dest, make) == dest


def test_two_processes_needing_one_build_make_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two processes that need the same build at the same moment
    monkeypatch.setattr(build, "BUILD_DIR", tmp_path / "build")
    dest = tmp_path / "build" / "thing-0123"
    log = tmp_path / "log"
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=build_in_child, args=(dest, log)) for _ in range(2)]
    # When both run
    for child in children:
        child.start()
    for child in children:
        child.join(JOIN_SECONDS)
    # Then both got it, and it was built once
    assert [child.exitcode for child in children] == [0, 0]
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
