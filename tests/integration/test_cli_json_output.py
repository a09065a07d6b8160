"""Every `pixflare ... --json`: stdout is exactly one JSON document; logs go to stderr.

Each subcommand runs through ``pixflare.cli.main`` (parsing, global options, the
logging setup) against in-process moto; only the stack lookup is replaced by the
moto resources' settings. The shared Powertools logger starts out writing to
stdout, as it does in a fresh process, so a log line leaking there fails the test.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambdas.backup import handler as backup_handler
from lambdas.shared.config import load_settings
from lambdas.shared.observability import logger
from pixflare import cli
from pixflare.commands import dlq
from tests.support.aws_resources import REGION, Resources, receive_all
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext, event_from_received
from tests.support.s3_target import S3Target

# Subcommands that run the embedded stack rather than talk to one: covered elsewhere.
NOT_HERE = {
    "demo": "starts the embedded stack and its worker processes (test_demo.py: --json)",
    "local up": "serves the embedded stack in the foreground (test_local_stack.py)",
}
FALLBACK = "fallback.pixflare.test"


@pytest.fixture(scope="module")
def target() -> Iterator[S3Target]:
    with S3Target(bucket="json-backups", auth=True) as server:
        yield server


class Pixflare:
    """Runs the real CLI with --json and checks what reached stdout and stderr."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.ran: set[str] = set()
        self.stderr = ""

    def __call__(self, *argv: str) -> Any:
        self.capsys.readouterr()  # what earlier handler calls logged is not this command's
        # Where a process's Powertools logger writes unless told otherwise: stdout.
        self.monkeypatch.setattr(logger.registered_handler, "stream", sys.stdout)
        code = cli.main([*argv, "--json"])
        # and the command put it back
        assert logger.registered_handler.stream is sys.stdout  # type: ignore[attr-defined]
        out, err = self.capsys.readouterr()
        command = " ".join(a for a in argv if not a.startswith("-"))
        assert code == 0, f"pixflare {command}: exit {code}; stderr: {err}"
        assert out.endswith("\n") and out.count("\n") == 1, f"pixflare {command} printed {out!r}"
        document = json.loads(out)  # raises if anything else shares stdout
        self.stderr += err
        return document

    def covers(self, *path: str) -> None:
        self.ran.add(" ".join(path))


@pytest.fixture
def pixflare(
    aws: Resources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Pixflare:
    # The backup target is a loopback HTTP server: the operator's opt-in allows it.
    use_env(
        monkeypatch,
        {
            **aws.env(),
            "CUSTOM_DOMAIN_FALLBACK_CNAME": FALLBACK,
            "BACKUP_ALLOW_PRIVATE_ENDPOINTS": "true",
        },
    )
    monkeypatch.setattr(cli, "resolve_settings", lambda **_: load_settings())
    return Pixflare(capsys, monkeypatch)


def _back_up_queued_images(aws: Resources) -> None:
    messages = receive_all(aws.queue_urls["backup"])
    response = backup_handler.handler(
        event_from_received(messages, aws.queue_arns["backup"]), FakeLambdaContext(60_000)
    )
    assert response == {"batchItemFailures": []}


def test_every_json_command_prints_one_document_and_logs_to_stderr(
    aws: Resources, pixflare: Pixflare, target: S3Target, tmp_path: Path
) -> None:
    run = pixflare
    # backup set | show: the owner's destination first, so the upload is backed up (the
    # secret from the environment, one of the two ways that keep it off the command line)
    pixflare.monkeypatch.setenv("PIXFLARE_BACKUP_SECRET_ACCESS_KEY", target.secret_access_key)
    saved = run(
        "backup", "set", "--owner", "alice", "--endpoint", target.endpoint,
        "--bucket", target.bucket, "--access-key-id", target.access_key_id, "--path-style",
    )  # fmt: skip
    assert saved["checked"] is True
    run.covers("backup", "set")
    assert run("backup", "show", "--owner", "alice")["bucket"] == target.bucket
    run.covers("backup", "show")

    # upload | status
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + random.Random(7).randbytes(2_000))
    image_id = run("upload", str(photo), "--owner", "alice", "--album", "trip")["imageId"]
    run.covers("upload")
    assert run("status", image_id)["imageId"] == image_id
    run.covers("status")

    # backup verify | restore, once the backup worker has copied it
    _back_up_queued_images(aws)
    assert run("backup", "verify", image_id)["ok"] is True
    run.covers("backup", "verify")
    restored = tmp_path / "restored.jpg"
    assert run("backup", "restore", image_id, "--to", str(restored))["file"] == str(restored)
    run.covers("backup", "restore")

    # views record | stats
    assert run("views", "record", image_id, "--at", "2026-03-04T10:00:00Z")["dayViews"] == 1
    run.covers("views", "record")
    run("cron", "run", "analytics", "--now", "2026-03-05T02:00:00Z")
    assert run("stats", "alice", "--day", "2026-03-04")["views"] == 1
    run.covers("stats")

    # cron run, each job: these log as they go (the reported bug)
    for job in ("cleanup", "analytics", "backup-sync"):
        assert run("cron", "run", job, "--now", "2026-03-06T03:00:00Z")["job"] == job
    run.covers("cron", "run")

    # list
    listed = run("list", "--owner", "alice", "--album", "trip")
    assert [image["imageId"] for image in listed["images"]] == [image_id]
    assert listed["nextCursor"] is None
    run.covers("list")

    # delete | restore (by an 8-character prefix) | delete --purge, backup included
    assert run("delete", image_id)["purge_after"]
    run.covers("delete")
    assert run("restore", image_id[:8])["imageId"] == image_id
    run.covers("restore")
    purged = run("delete", image_id, "--purge", "--yes")
    assert purged["purged"] is True and purged["backupDeleted"] is True

    # domain add | status | recheck
    added = run("domain", "add", "img.alice.example.com", "--owner", "alice")
    assert added["hostname"] == "img.alice.example.com"
    run.covers("domain", "add")
    assert run("domain", "status", "img.alice.example.com")["status"] == "pending"
    run.covers("domain", "status")
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=aws.tables["domains"],
        Key={"hostname": {"S": "img.alice.example.com"}},
        UpdateExpression="SET #status = :failed",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":failed": {"S": "failed"}},
    )
    assert run("domain", "recheck", "img.alice.example.com")["status"] == "pending"
    run.covers("domain", "recheck")

    # dlq list | redrive
    run("dlq", "list")
    run.covers("dlq", "list")
    # In-process moto lacks StartMessageMoveTask: one answer as AWS's, then moto's own.
    run.monkeypatch.setattr(dlq, "_start_move_task", lambda pair: "task-1")
    assert run("dlq", "redrive", "variant")["taskHandle"] == "task-1"
    run.monkeypatch.setattr(dlq, "_start_move_task", lambda pair: None)
    for queue in ("backup", "domain"):
        assert run("dlq", "redrive", queue)["method"] == "receive-send-delete"
    run.covers("dlq", "redrive")
    # dlq purge: no terminal here, so --yes
    assert run("dlq", "purge", "variant", "--yes")["deleted"] == 0
    run.covers("dlq", "purge")

    # keys create | list | revoke: the key once, then only its id
    created = run("keys", "create", "--owner", "alice")
    assert set(created) == {"owner", "keyId", "key", "created"}
    run.covers("keys", "create")
    (listed,) = run("keys", "list", "--owner", "alice")
    assert listed["keyId"] == created["keyId"] and created["key"] not in json.dumps(listed)
    run.covers("keys", "list")
    assert run("keys", "revoke", created["keyId"])["revoked"] is True
    run.covers("keys", "revoke")

    # Every leaf subcommand is here, or excused above
    leaves = {
        " ".join(path)
        for path, parser in cli.walk_subcommands(cli.build_parser())
        if not parser.subcommands
    }
    assert run.ran == leaves - NOT_HERE.keys()
    assert NOT_HERE.keys() <= leaves

    # The log lines went to stderr, named for the command line tool
    logged = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert any(line["message"] == "cron job done" for line in logged)
    assert {line["service"] for line in logged} == {"pixflare-cli"}
