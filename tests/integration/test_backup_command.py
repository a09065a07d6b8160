"""`pixflare backup set | show | restore | verify` against moto and an S3 target on loopback."""

from __future__ import annotations

import argparse
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.backup import handler as backup_handler
from lambdas.cron.registry import run_to_completion
from lambdas.shared.clock import utcnow
from lambdas.shared.config import load_settings
from lambdas.shared.originals import store_upload
from pixflare.cli import resolve_image_argument
from pixflare.commands import backup as backup_command
from pixflare.context import CommandContext, CommandError
from pixflare.operations.images import ImageIdError
from tests.support.aws_resources import Resources, receive_all
from tests.support.env import ALLOW_PRIVATE_ENDPOINTS, use_env
from tests.support.events import FakeLambdaContext, event_from_received
from tests.support.s3_target import S3Target, closed_port


@pytest.fixture(scope="module")
def target() -> Iterator[S3Target]:
    with S3Target(bucket="cli-backups", auth=True) as server:
        yield server


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    # The target is a loopback HTTP server: the operator's opt-in allows it.
    use_env(monkeypatch, {**aws.env("backup"), **ALLOW_PRIVATE_ENDPOINTS})
    return aws


class Pixflare:
    """Runs `pixflare backup ...` the way the CLI does: parse, resolve the IMAGE_ID, then
    call ``func`` with a context."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(prog="pixflare")
        backup_command.register(self.parser.add_subparsers(dest="command", required=True))

    def __call__(self, *argv: str, json_output: bool = True) -> tuple[int, Any, str]:
        args = self.parser.parse_args(list(argv))
        out, err = io.StringIO(), io.StringIO()
        ctx = CommandContext(load_settings(), json_output=json_output, stdout=out, stderr=err)
        try:
            resolve_image_argument(args, lambda: ctx.settings)
            code = args.func(args, ctx)
        except CommandError as failure:
            return failure.exit_code, None, str(failure)
        except ImageIdError as failure:  # main prints it as one line, exit 1
            return 1, None, str(failure)
        text = out.getvalue()
        return code, json.loads(text) if json_output else text, err.getvalue()


@pytest.fixture
def pixflare() -> Pixflare:
    return Pixflare()


def set_args(target: S3Target, owner: str, *extra: str, **overrides: str) -> list[str]:
    values = {
        "--owner": owner,
        "--endpoint": target.endpoint,
        "--bucket": target.bucket,
        "--access-key-id": target.access_key_id,
        "--secret-access-key": target.secret_access_key,
    }
    values.update({f"--{k.replace('_', '-')}": v for k, v in overrides.items()})
    return ["backup", "set", *[p for kv in values.items() for p in kv], "--path-style", *extra]


def test_set_checks_saves_and_never_shows_the_secret(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    code, saved, _ = pixflare(*set_args(target, "me", "--encrypt", prefix="pixflare"))
    assert code == 0
    assert saved["checked"] is True
    assert saved["encrypt"] is True
    assert saved["prefix"] == "pixflare/"
    # The check left nothing behind at the destination
    assert target.objects() == {}

    code, shown, _ = pixflare("backup", "show", "--owner", "me")
    assert code == 0
    assert shown["endpoint"] == target.endpoint
    assert shown["bucket"] == target.bucket
    assert target.secret_access_key not in json.dumps(shown) + json.dumps(saved)
    # and the table holds only ciphertext
    import boto3

    item = boto3.client("dynamodb").get_item(
        TableName=env.tables["destinations"], Key={"owner": {"S": "me"}}
    )["Item"]
    assert item["kind"] == {"S": "destination"}
    assert target.secret_access_key not in json.dumps(item, default=repr)


def test_set_says_when_the_endpoint_is_unreachable(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    code, _, message = pixflare(*set_args(target, "me", endpoint=endpoint))
    assert code == 1
    assert f"cannot reach {endpoint}" in message
    assert pixflare("backup", "show", "--owner", "me")[0] == 1  # nothing saved


def test_set_says_when_the_credentials_are_wrong(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    code, _, message = pixflare(
        *set_args(target, "me", secret_access_key="not-the-secret-" + "x" * 20)
    )
    assert code == 1
    assert "rejected the credentials (SignatureDoesNotMatch)" in message
    assert "not-the-secret" not in message

    code, _, message = pixflare(*set_args(target, "me", access_key_id="AKIAUNKNOWNKEY000000"))
    assert code == 1
    assert "rejected the credentials (InvalidAccessKeyId)" in message


def test_set_says_when_the_bucket_does_not_exist(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    code, _, message = pixflare(*set_args(target, "me", bucket="no-such-bucket"))
    assert code == 1
    assert "bucket 'no-such-bucket' does not exist" in message


def test_set_rejects_a_malformed_endpoint_before_any_call(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    code, _, message = pixflare(*set_args(target, "me", endpoint="127.0.0.1:9000"))
    assert code == 1
    assert "must be an http:// or https:// URL" in message


def test_restore_and_verify_commands(
    env: Resources, target: S3Target, pixflare: Pixflare, tmp_path: Path
) -> None:
    # Given a new user's flow: set an encrypted destination, upload a photo, let it sync
    assert pixflare(*set_args(target, "newuser", "--encrypt"))[0] == 0
    data = b"\xff\xd8\xff\xe0" + random.Random(5).randbytes(150_000)
    upload = store_upload(load_settings(), data, owner="newuser", album="trip", filename="p.jpg")
    messages = receive_all(env.queue_urls["backup"])
    response = backup_handler.handler(
        event_from_received(messages, env.queue_arns["backup"]), FakeLambdaContext(60_000)
    )
    assert response == {"batchItemFailures": []}
    image_id = upload.record.image_id

    # When they verify and restore it
    code, verified, _ = pixflare("backup", "verify", image_id)
    assert code == 0
    assert verified["ok"] is True
    assert verified["encrypted"] is True
    out = tmp_path / "p.jpg"
    code, restored, _ = pixflare("backup", "restore", image_id, "--to", str(out))

    # Then they get the same bytes back
    assert code == 0
    assert restored["sha256"] == upload.record.sha256
    assert out.read_bytes() == data
    code, human, _ = pixflare("backup", "verify", image_id, json_output=False)
    assert "matches" in human

    # And a spoiled backup is reported, not restored
    key = "newuser/trip/p.jpg"
    stored, metadata = target.read(key)
    target.write(key, stored[:-1], metadata)
    code, _, message = pixflare("backup", "verify", image_id)
    assert code == 1
    assert "failed verification" in message
    spoiled_out = tmp_path / "again.jpg"
    code, _, message = pixflare("backup", "restore", image_id, "--to", str(spoiled_out))
    assert code == 1
    assert "nothing written" in message
    assert not spoiled_out.exists()


def upload_photos(owner: str, count: int) -> list[str]:
    settings = load_settings()
    return [
        store_upload(
            settings,
            b"\xff\xd8\xff\xe0" + random.Random(n).randbytes(2_000),
            owner=owner,
            album="early",
            filename=f"{n}.jpg",
        ).record.image_id
        for n in range(count)
    ]


def queued_image_ids(env: Resources) -> list[str]:
    return sorted(json.loads(m["Body"])["imageId"] for m in receive_all(env.queue_urls["backup"]))


def test_set_brings_the_owners_earlier_images_along_once(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    # Given three photos uploaded while their owner had no destination: none queued
    ids = upload_photos("early", 3)
    assert queued_image_ids(env) == []

    # When the owner sets one, all three are queued, and show counts them so
    code, saved, _ = pixflare(*set_args(target, "early"))
    assert code == 0
    assert (saved["queued"], saved["alreadyBackedUp"]) == (3, 0)
    messages = receive_all(env.queue_urls["backup"])
    assert sorted(json.loads(m["Body"])["imageId"] for m in messages) == sorted(ids)
    images = pixflare("backup", "show", "--owner", "early")[1]["images"]
    assert images == {"backedUp": 0, "queued": 3, "failed": 0, "notYet": 0}

    # Then once the backup worker has copied them
    response = backup_handler.handler(
        event_from_received(messages, env.queue_arns["backup"]), FakeLambdaContext(60_000)
    )
    assert response == {"batchItemFailures": []}
    images = pixflare("backup", "show", "--owner", "early")[1]["images"]
    assert images == {"backedUp": 3, "queued": 0, "failed": 0, "notYet": 0}

    # a re-set of the same destination queues nothing twice
    code, human, _ = pixflare(*set_args(target, "early"), json_output=False)
    assert code == 0
    assert human.splitlines()[-1] == "queued 0 images for backup (3 already backed up there)"
    assert queued_image_ids(env) == []


def test_a_set_that_could_not_queue_leaves_its_images_to_the_daily_sync(
    env: Resources, target: S3Target, pixflare: Pixflare, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two earlier photos, and a backup queue the set cannot send to
    ids = upload_photos("cut", 2)
    use_env(monkeypatch, {"BACKUP_QUEUE_URL": env.queue_urls["backup"] + "-gone"})

    # When the owner sets a destination, it is saved, and the error says what to do
    code, _, message = pixflare(*set_args(target, "cut"))
    assert code == 1
    assert message.startswith(
        "backup destination saved, but queueing the owner's images stopped after 0: "
    )
    assert message.endswith("run the same `pixflare backup set` again to queue the rest")
    assert "\n" not in message
    # (the images were marked pending before the send)
    use_env(monkeypatch, {"BACKUP_QUEUE_URL": env.queue_urls["backup"]})
    images = pixflare("backup", "show", "--owner", "cut")[1]["images"]
    assert images == {"backedUp": 0, "queued": 2, "failed": 0, "notYet": 0}

    # Then the daily backup sync queues them
    report = run_to_completion("backup-sync", load_settings(), utcnow())
    assert report.counts["queued"] == 2
    assert queued_image_ids(env) == sorted(ids)


def test_restore_onto_an_existing_file_needs_force(
    env: Resources, pixflare: Pixflare, tmp_path: Path
) -> None:
    existing = tmp_path / "kept.jpg"
    existing.write_bytes(b"mine")
    code, _, message = pixflare("backup", "restore", "0" * 32, "--to", str(existing))
    assert code == 1
    assert message == f"{existing} exists; pass --force to overwrite it"
    assert existing.read_bytes() == b"mine"
    code, _, message = pixflare("backup", "restore", "0" * 32, "--to", str(tmp_path))
    assert code == 1
    assert message.endswith(f"{tmp_path} is a directory; give a file name")


def test_restore_of_an_unknown_image_is_a_clear_error(env: Resources, pixflare: Pixflare) -> None:
    code, _, message = pixflare("backup", "restore", "0" * 32, "--to", "/tmp/never-written")
    assert code == 1
    assert "no image" in message
    code, _, message = pixflare("backup", "verify", "not-an-id")
    assert code == 1
    assert "'not-an-id' is not an image id" in message


# -- the secret never on the command line (issue #17) -----------------------------------------


def secretless_args(target: S3Target, owner: str, *extra: str) -> list[str]:
    args = set_args(target, owner, *extra)
    at = args.index("--secret-access-key")
    return args[:at] + args[at + 2 :]


def test_secret_from_standard_input_is_the_documented_way(
    env: Resources, target: S3Target, pixflare: Pixflare, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(target.secret_access_key + "\n"))
    code, saved, err = pixflare(
        *secretless_args(target, "stdin-owner"), "--secret-access-key-stdin"
    )
    assert code == 0
    assert saved["checked"] is True
    assert err == ""  # no warning


def test_secret_from_the_environment(
    env: Resources, target: S3Target, pixflare: Pixflare, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(backup_command.SECRET_ENV, target.secret_access_key)
    code, saved, err = pixflare(*secretless_args(target, "env-owner"))
    assert code == 0
    assert saved["checked"] is True
    assert err == ""


def test_secret_as_an_argument_still_works_but_warns_on_stderr(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    code, saved, err = pixflare(*set_args(target, "arg-owner"))
    assert code == 0
    assert saved["checked"] is True  # and stdout held exactly that one JSON document
    assert err.strip() == backup_command.ARGUMENT_WARNING
    assert target.secret_access_key not in err


def test_no_secret_at_all_says_how_to_give_it(
    env: Resources, target: S3Target, pixflare: Pixflare
) -> None:
    code, _, message = pixflare(*secretless_args(target, "nosecret-owner"))
    assert code == 1
    assert "--secret-access-key-stdin" in message
    assert backup_command.SECRET_ENV in message
    assert pixflare("backup", "show", "--owner", "nosecret-owner")[0] == 1


def test_secret_argument_and_stdin_are_exclusive(target: S3Target, pixflare: Pixflare) -> None:
    with pytest.raises(SystemExit):
        pixflare(*set_args(target, "me"), "--secret-access-key-stdin")


# -- the endpoint policy at `backup set` (issue #17) ------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        (
            "https://10.0.0.5",
            "the endpoint is a private address (10.0.0.5); "
            "backups go to public S3-compatible services only",
        ),
        ("{target}", "the endpoint uses plain http://; backups go to https:// endpoints only"),
        (
            "https://169.254.169.254",
            "the endpoint is the cloud instance metadata address (169.254.169.254); "
            "backups go to public S3-compatible services only",
        ),
    ],
)
def test_set_refuses_a_private_endpoint_in_one_line_when_the_opt_in_is_off(
    env: Resources,
    target: S3Target,
    pixflare: Pixflare,
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str,
    reason: str,
) -> None:
    monkeypatch.delenv("BACKUP_ALLOW_PRIVATE_ENDPOINTS")
    use_env(monkeypatch, {})
    monkeypatch.setenv(backup_command.SECRET_ENV, target.secret_access_key)
    url = endpoint.format(target=target.endpoint)
    code, _, message = pixflare(*secretless_args(target, "eve"), "--endpoint", url)
    assert code == 1
    assert message == f"backup destination not saved: {reason}"
    assert pixflare("backup", "show", "--owner", "eve")[0] == 1  # nothing saved
