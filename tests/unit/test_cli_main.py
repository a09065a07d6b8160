"""The `pixflare` command's parsing and failure reporting, without a stack."""

from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from lambdas.shared.observability import logger
from pixflare.cli import (
    COMMAND_MODULES,
    SERVICE_NAME,
    build_parser,
    error_reason,
    invoked_command,
    logs_to,
    main,
    walk_subcommands,
)
from pixflare.context import CommandError
from pixflare.resolve import ResolveError, settings_from_outputs


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_every_command_module_is_registered() -> None:
    commands = build_parser().subcommands
    for name in ("upload", "status", "delete", "dlq", "local", "demo"):
        assert name in commands


def test_the_command_table_names_the_module_that_registers_each_command() -> None:
    # Given every command module imported (what `pixflare --help` shows)
    everything = build_parser().subcommands
    # Then the table knows each command, and each command's module alone registers it
    assert set(COMMAND_MODULES) == set(everything)
    for command, module in COMMAND_MODULES.items():
        assert command in build_parser([command]).subcommands, (command, module)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["status", "a" * 32], "status"),
        (["--endpoint", "http://127.0.0.1:1", "--json", "dlq", "list"], "dlq"),
        (["--stack", "S", "--region", "r", "local", "up"], "local"),
        (["--endpoint=http://127.0.0.1:1", "list", "--owner", "o"], "list"),
        (["--help"], None),
        ([], None),
    ],
)
def test_the_invoked_command_is_the_first_word_after_the_global_options(
    argv: list[str], command: str | None
) -> None:
    assert invoked_command(argv) == command


def test_running_a_command_builds_only_its_own_modules_commands() -> None:
    assert set(build_parser(["status", "a" * 32]).subcommands) == {
        "upload",
        "status",
        "list",
        "delete",
        "restore",
    }
    # and a word that is no command gets every command, so argparse can list them
    assert set(build_parser(["stauts"]).subcommands) == set(COMMAND_MODULES)


def test_global_options_are_accepted_after_the_subcommand_too() -> None:
    args = build_parser().parse_args(
        ["status", "a" * 32, "--json", "--endpoint", "http://127.0.0.1:1", "--stack", "S"]
    )
    assert args.json_output is True
    assert args.target_endpoint == "http://127.0.0.1:1"
    assert args.stack_name == "S"


def test_global_options_before_the_subcommand_are_kept() -> None:
    args = build_parser().parse_args(["--json", "--region", "eu-west-1", "status", "a" * 32])
    assert args.json_output is True
    assert args.region == "eu-west-1"


def test_a_malformed_image_id_fails_with_one_line_before_any_aws_call() -> None:
    code, out, err = run("--endpoint", "http://127.0.0.1:9", "status", "not-an-id")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "not an image id" in err


def test_several_files_with_one_name_are_refused() -> None:
    code, _, err = run("upload", "a.jpg", "b.jpg", "--owner", "o", "--album", "a", "--name", "n")
    assert code == 1
    assert "--name needs exactly one FILE" in err


def test_expected_failures_become_one_line_reasons() -> None:
    assert error_reason(CommandError("no image x"), None) == "no image x"
    unreachable = error_reason(EndpointConnectionError(endpoint_url="http://x"), "http://x")
    assert unreachable == "cannot reach http://x: is `pixflare local up` running?"
    assert "no AWS credentials" in str(error_reason(NoCredentialsError(), None))
    assert error_reason(ValueError("a bug"), None) is None  # a bug keeps its traceback


def test_outputs_map_to_the_functions_environment_names() -> None:
    settings = settings_from_outputs(
        {"ImagesBucketName": "b", "ImagesTableName": "t", "VariantQueueUrl": "http://q"},
        environ={"SOFT_DELETE_RETENTION_DAYS": "7", "IMAGES_BUCKET": "not-this-one"},
    )
    assert settings.images_bucket == "b"
    assert settings.images_table == "t"
    assert settings.variant_queue_url == "http://q"
    assert settings.soft_delete_retention_days == 7
    assert settings.enable_queues is True


def test_deployed_runtime_settings_come_from_the_stack_and_the_shell_overrides_them() -> None:
    outputs = {
        "ImagesBucketName": "b",
        "VariantQueueUrl": "http://q",
        "RuntimeSettings": json.dumps(
            {
                "CUSTOM_DOMAIN_FALLBACK_CNAME": "cdn.example.com",
                "DOMAIN_MAX_CHECKS": "40",
                "IMAGES_BUCKET": "ignored: resources come from their own outputs",
            }
        ),
    }
    deployed = settings_from_outputs(outputs, environ={})
    assert deployed.custom_domain_fallback_cname == "cdn.example.com"
    assert deployed.images_bucket == "b"
    overridden = settings_from_outputs(outputs, environ={"DOMAIN_MAX_CHECKS": "3"})
    assert overridden.domain_max_checks == 3
    assert overridden.custom_domain_fallback_cname == "cdn.example.com"


def test_a_malformed_runtime_settings_output_is_a_clear_error() -> None:
    with pytest.raises(ResolveError, match="RuntimeSettings"):
        settings_from_outputs({"RuntimeSettings": "{not json"}, environ={})


def test_a_stack_without_queue_outputs_uploads_without_queues() -> None:
    settings = settings_from_outputs({"ImagesBucketName": "b"}, environ={"ENABLE_QUEUES": "true"})
    assert settings.enable_queues is False


@pytest.mark.parametrize("argv", [["local", "up", "--port", "70000"], ["local", "up", "-c", "x"]])
def test_local_up_refuses_bad_arguments_in_one_line(argv: list[str]) -> None:
    code, _, err = run(*argv)
    assert code == 1
    assert err.count("\n") == 1


def _subcommand_paths() -> list[list[str]]:
    return [path for path, _ in walk_subcommands(build_parser())]


def test_subcommands_are_found_at_every_depth() -> None:
    paths = {" ".join(path) for path in _subcommand_paths()}
    assert {"cron", "cron run", "backup set", "dlq redrive", "domain add", "local up"} <= paths


def test_a_subcommand_keeps_its_own_option_of_a_global_name() -> None:
    """``backup set --endpoint`` is the destination's; the stack's goes before the subcommand."""
    args = build_parser().parse_args(
        [
            "--endpoint", "http://stack", "backup", "set", "--owner", "o",
            "--endpoint", "http://destination", "--bucket", "b",
            "--access-key-id", "k", "--secret-access-key", "s",
        ]
    )  # fmt: skip
    assert args.target_endpoint == "http://stack"
    assert args.destination_endpoint == "http://destination"


def test_logs_go_to_the_given_stream_as_the_cli_service_and_are_put_back_after() -> None:
    handler = logger.registered_handler
    stream_before = getattr(handler, "stream", None)
    service_before = logger.get_current_keys().get("service")
    err = io.StringIO()
    with logs_to(err):
        logger.info("inside the command")
    logger.info("outside the command")
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["inside the command"]
    assert lines[0]["service"] == SERVICE_NAME == "pixflare-cli"
    assert getattr(handler, "stream", None) is stream_before
    assert logger.get_current_keys().get("service") == service_before


def test_a_failing_command_still_puts_the_logger_back() -> None:
    stream_before = getattr(logger.registered_handler, "stream", None)
    code, _, err = run("--endpoint", "http://127.0.0.1:9", "status", "not-an-id")
    assert code == 1
    assert "not an image id" in err
    assert getattr(logger.registered_handler, "stream", None) is stream_before


@pytest.mark.parametrize("path", _subcommand_paths(), ids=" ".join)
def test_every_subcommand_help_prints_and_exits_zero(
    path: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path, "--help"]) == 0
    assert "usage: pixflare" in capsys.readouterr().out
