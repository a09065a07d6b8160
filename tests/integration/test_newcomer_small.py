"""The smaller things a newcomer met (issue #18, point 8): the installed `pixflare`
script, in processes of its own, against one local stack, and `pixflare local up`
itself stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pixflare.local import samples
from pixflare.local.stack import LocalStack
from pixflare.local.synth import cached_template_path, synthesize_template
from pixflare.resolve import OUTPUTS_BUCKET, outputs_key
from tests.support.console import PIXFLARE, on_stack, refused, run
from tests.support.local_stack import SETTLE_DEADLINE_SECONDS, started_stack, wait_until
from tests.support.processes import alive, descendants

pytestmark = pytest.mark.slow

IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")


# -- no stack needed -------------------------------------------------------------------
def test_local_up_and_demo_list_and_take_only_the_global_option_they_use() -> None:
    # Their help lists --json, and none of the options that point at a stack
    for command in (["local", "up"], ["demo"]):
        done = run(*command, "--help")
        assert done.returncode == 0, done.stderr
        options = done.stdout.split("\noptions:\n", 1)[1]
        assert "--json" in options
        for unused in ("--endpoint", "--stack", "--region"):
            assert unused not in options, (command, unused)
    # Given one anyway, before or after the subcommand: an argument error, not ignored
    line = refused(run("local", "up", "--region", "eu-west-1"), code=2)
    assert line.startswith("pixflare: --region does not apply to `pixflare local up`")
    line = refused(run("--stack", "Other", "demo"), code=2)
    assert line.startswith("pixflare: --stack does not apply to `pixflare demo`")
    line = refused(run("demo", "--endpoint", "http://127.0.0.1:4566"), code=2)
    assert "--endpoint does not apply" in line
    # AWS_ENDPOINT_URL in the shell (as the README has you export) is not a --endpoint
    done = run("local", "up", "--port", "70000", env={"AWS_ENDPOINT_URL": "not a url"})
    assert refused(done) == "pixflare: --port must be between 0 and 65535"


# -- against a running local stack ------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory, "newcomer-small") as running:
        yield running


def test_upload_prints_what_its_help_says_in_both_modes(stack: LocalStack, tmp_path: Path) -> None:
    helped = run("upload", "--help").stdout
    assert "'FILE -> IMAGE_ID'" in helped and '{"imageId": ...}' in helped
    first, second = tmp_path / "one.jpg", tmp_path / "two.png"
    first.write_bytes(samples.demo_samples()[0].data)
    second.write_bytes(samples.demo_samples()[1].data)
    # Human: one line per file, FILE -> IMAGE_ID
    done = on_stack(stack, "upload", str(first), str(second), "--owner", "uma", "--album", "h")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines] == [str(first), str(second)]
    assert all(IMAGE_ID.match(line.split(" -> ")[1]) for line in lines)
    # --json: {"imageId": ...}, a list of them for several files
    done = on_stack(stack, "--json", "upload", str(first), "--owner", "uma", "--album", "j")
    assert done.returncode == 0, done.stderr
    assert IMAGE_ID.match(json.loads(done.stdout)["imageId"])
    done = on_stack(
        stack, "--json", "upload", str(first), str(second), "--owner", "uma", "--album", "k"
    )
    assert [set(d) for d in json.loads(done.stdout)] == [{"imageId"}, {"imageId"}]


def test_upload_names_the_file_it_refuses(stack: LocalStack, tmp_path: Path) -> None:
    good, empty, text = tmp_path / "good.jpg", tmp_path / "empty.jpg", tmp_path / "notes.jpg"
    good.write_bytes(samples.demo_samples()[0].data)
    empty.write_bytes(b"")
    text.write_text("not a picture")
    folder = tmp_path / "holiday"
    folder.mkdir()

    def upload(*files: Path) -> subprocess.CompletedProcess[str]:
        return on_stack(stack, "upload", *map(str, files), "--owner", "ned", "--album", "r")

    # An empty file, alone or after a good one, is named, and nothing is stored
    assert refused(upload(empty)) == f"pixflare: {empty}: the file is empty (nothing was uploaded)"
    assert refused(upload(good, empty)).startswith(f"pixflare: {empty}: the file is empty")
    # A directory says so, and how to pass its files
    line = refused(upload(folder))
    assert line == (
        f"pixflare: {folder} is a directory: name the files in it, e.g. "
        f"pixflare upload {folder}/*.jpg --owner O --album A"
    )
    assert (
        refused(upload(tmp_path / "missing.jpg"))
        == f"pixflare: {tmp_path}/missing.jpg: no such file"
    )
    # What the stack refuses in the only file given is named too
    assert refused(upload(text)).startswith(f"pixflare: {text}: not an image")
    # The good file was not stored by the refused pair: its name is still free
    assert upload(good).returncode == 0


def test_stats_tells_a_day_not_rolled_up_from_one_without_the_owners_views(
    stack: LocalStack, tmp_path: Path
) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(samples.demo_samples()[0].data)
    done = on_stack(stack, "--json", "upload", str(photo), "--owner", "vic", "--album", "s")
    image_id = json.loads(done.stdout)["imageId"]
    done = on_stack(
        stack, "views", "record", image_id, "--count", "2", "--at", "2026-01-10T09:00:00Z"
    )
    assert done.returncode == 0, done.stderr

    def said(*args: str) -> str:
        done = on_stack(stack, "stats", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def document(*args: str) -> dict[str, object]:
        done = on_stack(stack, "--json", "stats", *args)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    # Before the roll-up: the day and its month wait for the job
    line = said("nobody", "--day", "2026-01-10")
    assert line.startswith("nobody: 0 views in 2026-01-10 (not rolled up yet:")
    assert "`pixflare cron run analytics --day 2026-01-10`" in line
    stats = document("nobody", "--day", "2026-01-10")
    assert stats["rollup"] == "not-rolled-up" and stats["rolledUp"] is False
    stats = document("nobody", "--month", "2026-01")
    assert (stats["rollup"], stats["rolledUp"], stats["through"]) == (
        "nothing-rolled-up",
        False,
        None,
    )

    # After the roll-up of the 10th, and of the 11th when nobody's images were viewed
    for day in ("2026-01-10", "2026-01-11"):
        done = on_stack(stack, "cron", "run", "analytics", "--day", day)
        assert done.returncode == 0, done.stderr
    assert said("nobody", "--day", "2026-01-10") == (
        "nobody: 0 views in 2026-01-10 (rolled up: none of nobody's images were viewed that day)"
    )
    stats = document("nobody", "--day", "2026-01-11")
    assert stats["rollup"] == "rolled-up" and stats["rolledUp"] is True
    stats = document("nobody", "--month", "2026-01")
    assert (stats["rollup"], stats["rolledUp"], stats["through"], stats["rolledUpDays"]) == (
        "rolled-up",
        True,
        "2026-01-11",
        ["2026-01-10", "2026-01-11"],
    )
    assert said("nobody", "--month", "2026-01") == (
        "nobody: 0 views in 2026-01 (rolled up through 2026-01-11: "
        "none of nobody's images were viewed)"
    )
    assert said("nobody", "--month", "2025-12").startswith(
        "nobody: 0 views in 2025-12 (nothing rolled up for 2025-12 yet:"
    )
    # The owner whose image was viewed has the figures
    assert said("vic", "--day", "2026-01-10") == "vic: 2 views in 2026-01-10"


# -- `pixflare local up` in a process of its own -----------------------------------------
def test_local_up_takes_its_template_cache_from_xdg_and_stops_on_sigterm_leaving_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the template cached under XDG_CACHE_HOME, marked so its use shows
    template = synthesize_template()
    template.setdefault("Outputs", {})["CacheProbe"] = {"Value": "from XDG_CACHE_HOME"}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cached = cached_template_path()
    assert cached.parent == tmp_path / "xdg" / "pixflare" / "templates"
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps(template))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [str(PIXFLARE), "local", "up", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "POWERTOOLS_METRICS_DISABLED": "true"},
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready = wait_until(
            lambda: next((line for line in lines if line.startswith("ready: ")), None),
            "the ready line",
        )
        endpoint = ready.split()[-1]
        # It says how to point the other commands at it
        hint = wait_until(
            lambda: next((line for line in lines if "export AWS_ENDPOINT_URL" in line), None),
            "the export hint",
        )
        assert hint.split()[1] == f"AWS_ENDPOINT_URL={endpoint}"
        # The stack was built from the template in XDG_CACHE_HOME (no synthesis)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        body = s3.get_object(Bucket=OUTPUTS_BUCKET, Key=outputs_key("PixflareJobs"))["Body"]
        assert json.loads(body.read())["Outputs"]["CacheProbe"] == "from XDG_CACHE_HOME"
        # With functions warm: an upload through its ingest and variant functions
        photo = tmp_path / "p.jpg"
        photo.write_bytes(samples.demo_samples()[0].data)
        done = run(
            "--endpoint", endpoint, "upload", str(photo), "--owner", "sig", "--album", "t",
            "--wait", str(SETTLE_DEADLINE_SECONDS),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        children = descendants(process.pid)
        assert children, "no function processes to stop"
        # When it gets SIGTERM
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(5)
    # Then it exits 0, says so, and leaves none of its function processes behind
    assert code == 0, "".join(lines[-20:])
    assert [line.strip() for line in lines[-2:]] == ["stopping...", "stopped"]
    wait_until(
        lambda: not any(alive(pid) for pid in children), "the children to be gone", seconds=5
    )
