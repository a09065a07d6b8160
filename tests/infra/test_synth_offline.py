"""A synth without a network: one line naming the package index, exit status 1."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from infra import synth
from layers import build

pytestmark = pytest.mark.slow

LOCK_HEAD_LINES = 5  # the comment, then annotated-types with its two hashes


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip pointed at a closed port, with no cache, no local wheels and no config file; the
    deps layer built from a lock no cached build was made from."""
    for name, value in {
        "PIP_CONFIG_FILE": os.devnull,  # this machine's pip.conf adds local indexes
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_FIND_LINKS": "",  # this machine sets /opt/wheels
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "3",
    }.items():
        monkeypatch.setenv(name, value)
    real = build.LAYERS["deps"].lock.read_text().splitlines()[:LOCK_HEAD_LINES]
    lock = tmp_path / "requirements.lock"
    lock.write_text("\n".join([f"# offline test {uuid.uuid4()}", *real]) + "\n")
    spec = build.LayerSpec(name="deps", lock=lock, description="offline test")
    monkeypatch.setitem(build.LAYERS, "deps", spec)
    monkeypatch.setattr(build, "ROOT", tmp_path)  # the lock's path is shown relative to it
    return lock


def test_a_layer_build_without_the_index_names_the_cause(offline: Path) -> None:
    with pytest.raises(build.BuildError) as caught:
        build.build_layer("deps")
    message = str(caught.value)
    assert "package index" in message
    assert "is the network up?" in message
    assert "\n" not in message


def test_a_synth_without_the_index_is_one_line_and_exit_1(
    offline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        synth.main(
            ["-c", "customDomainFallbackCname=images.example.com", "-c", "concurrencyBudget=12"]
        )
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("synth: installing requirements.lock for aarch64 failed: ")
    assert "cannot download wheels from the package index (is the network up?)" in err
    assert "Traceback" not in err


def test_a_context_that_cannot_work_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        synth.main(["-c", "concurrencyBudget=4"])
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("synth: context concurrencyBudget: 4 is too small")
    assert len(err.splitlines()) == 1
