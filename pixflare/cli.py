"""The `pixflare` command: global options, subcommand discovery, one-line errors.

Every module in ``pixflare/commands/`` registers its subcommands. Global options
(``--endpoint``, ``--json``, ``--stack``, ``--region``) are accepted before the
subcommand and, where the subcommand has no option of the same name, after it
(``pixflare status ID --json``). ``backup set`` has its own ``--endpoint`` (the
destination's); give the stack's before the subcommand or as AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from lambdas.shared.aws import reset_clients
from lambdas.shared.config import Settings, reset_settings
from lambdas.shared.errors import PixflareError
from pixflare import commands
from pixflare.context import CommandContext, CommandError
from pixflare.resolve import DEFAULT_STACK_NAME, LOCAL_REGION, resolve_settings

PROG = "pixflare"


def default_stack_name() -> str:
    try:
        from infra.config import STACK_NAME
    except ImportError:
        return DEFAULT_STACK_NAME
    return STACK_NAME


class LazyCommandContext(CommandContext):
    """A CommandContext whose settings are resolved on first use, so commands that
    never touch a stack (``local up``, ``demo``) never look for one."""

    _settings: Settings | None
    _resolve: Callable[[], Settings]

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._resolve()
        return self._settings

    @settings.setter
    def settings(self, value: Settings | None) -> None:
        self._settings = value


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add the global options to ``parser`` (skipping any it defines itself)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    options: list[tuple[str, dict[str, Any]]] = [
        (
            "--endpoint",
            {
                "dest": "target_endpoint",
                "metavar": "URL",
                "default": default(os.environ.get("AWS_ENDPOINT_URL") or None),
                "help": "a running local stack (default: AWS_ENDPOINT_URL); "
                "without it, the deployed stack",
            },
        ),
        (
            "--json",
            {
                "dest": "json_output",
                "action": "store_true",
                "default": default(False),
                "help": "print one JSON document on stdout",
            },
        ),
        (
            "--stack",
            {
                "dest": "stack_name",
                "metavar": "NAME",
                "default": default(default_stack_name()),
                # Spelled out, not %(default)s: on subcommands the default is SUPPRESS.
                "help": f"the CloudFormation stack (default: {default_stack_name()})",
            },
        ),
        (
            "--region",
            {
                "dest": "region",
                "metavar": "REGION",
                "default": default(None),
                "help": "AWS region (default: AWS_REGION / your profile's)",
            },
        ),
    ]
    for flag, kwargs in options:
        if flag not in parser._option_string_actions:
            parser.add_argument(flag, **kwargs)


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.append(sub)
                found.extend(_leaf_parsers(sub))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pixflare jobs on AWS: uploads, queues, daily jobs, backups, "
        "custom domains; and the embedded local stack.",
    )
    _global_options(parser, suppress=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    for sub in _leaf_parsers(parser):
        _global_options(sub, suppress=True)
    return parser


def _has_credentials() -> bool:
    try:
        return boto3.session.Session().get_credentials() is not None
    except BotoCoreError:
        return False


def prepare_environment(endpoint: str | None, region: str | None) -> None:
    """Point the shared client factory at the target (clients are remade only if it moved)."""
    watched = (
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
    before = {name: os.environ.get(name) for name in watched}
    if endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        # moto accepts any key; a newcomer with no AWS account has none.
        if not _has_credentials():
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        if not (region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            region = LOCAL_REGION
    if region:
        os.environ["AWS_REGION"] = region
        os.environ["AWS_DEFAULT_REGION"] = region
    if {name: os.environ.get(name) for name in watched} != before:
        reset_clients()
    reset_settings()


def error_reason(err: BaseException, endpoint: str | None) -> str | None:
    """The one line to show for an expected failure; None for a bug (show the traceback)."""
    if isinstance(err, CommandError | PixflareError):
        return str(err) or type(err).__name__
    if isinstance(err, EndpointConnectionError):
        where = endpoint or "AWS"
        hint = ": is `pixflare local up` running?" if endpoint else ""
        return f"cannot reach {where}{hint}"
    if isinstance(err, NoCredentialsError):
        return "no AWS credentials: configure a profile or pass --endpoint URL for a local stack"
    if isinstance(err, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"AWS said {error.get('Code', '?')}: {error.get('Message', '')}".strip()
    if isinstance(err, BotoCoreError):
        return f"AWS call failed: {err}"
    if isinstance(err, OSError):
        return f"{err.strerror or err}: {err.filename}" if err.filename else str(err)
    return None


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    endpoint: str | None = args.target_endpoint
    region: str | None = args.region
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(err_stream)
        return 2
    ctx = LazyCommandContext(
        settings=None,  # type: ignore[arg-type]
        endpoint=endpoint,
        json_output=bool(args.json_output),
        stdout=out,
        stderr=err_stream,
    )
    ctx._resolve = lambda: resolve_settings(stack=args.stack_name, endpoint=endpoint, region=region)
    try:
        prepare_environment(endpoint, region)
        return int(func(args, ctx) or 0)
    except KeyboardInterrupt:
        err_stream.write(f"{PROG}: interrupted\n")
        return 130
    except CommandError as error:
        err_stream.write(f"{PROG}: {_one_line(str(error))}\n")
        return error.exit_code or 1
    except Exception as error:
        reason = error_reason(error, endpoint)
        if reason is None:
            raise
        err_stream.write(f"{PROG}: {_one_line(reason)}\n")
        return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
