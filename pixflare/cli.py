"""The `pixflare` command: global options, subcommand discovery, one-line errors.

Every module in ``pixflare/commands/`` registers its subcommands. Global options
(``--endpoint``, ``--json``, ``--stack``, ``--region``) are accepted before the
subcommand and, where the subcommand has no option of the same name, after it
(``pixflare status ID --json``). ``backup set`` has its own ``--endpoint`` (the
destination's); give the stack's before the subcommand or as AWS_ENDPOINT_URL.
``local up`` and ``demo`` run a stack of their own: they take ``--json`` only, and
refuse the other global options.

Output: stdout carries the command's result only (with ``--json``, one JSON
document). Log lines of the shared Powertools logger go to stderr, tagged
``"service": "pixflare-cli"``, while a command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

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
from lambdas.shared.images import ImageRepository
from pixflare import commands
from pixflare.context import CommandContext, CommandError
from pixflare.operations.images import resolve_image_id
from pixflare.resolve import DEFAULT_STACK_NAME, LOCAL_REGION, resolve_settings

PROG = "pixflare"
SERVICE_NAME = "pixflare-cli"


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


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that remembers its subcommands.

    argparse keeps them in private attributes; this records the subcommand actions
    it creates (``add_subparsers`` is public, so is an action's ``choices``), and
    makes every parser below it a CommandParser too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subcommand_groups: list[argparse.Action] = []

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", CommandParser)
        group = super().add_subparsers(**kwargs)
        self._subcommand_groups.append(group)
        return group

    @property
    def subcommands(self) -> dict[str, CommandParser]:
        """Subcommand name (aliases included) -> its parser."""
        found: dict[str, CommandParser] = {}
        for group in self._subcommand_groups:
            found.update(group.choices or {})
        return found


def walk_subcommands(parser: CommandParser) -> Iterator[tuple[list[str], CommandParser]]:
    """Every subcommand below ``parser`` at any depth, as (path of names, parser)."""
    for name, sub in parser.subcommands.items():
        yield [name], sub
        for path, deeper in walk_subcommands(sub):
            yield [name, *path], deeper


# A subcommand that does not use every global option lists the ones it does:
# ``set_defaults(global_options=("--json",))``. The others are left out of its help
# and refused when given (:func:`refused_global_option`), before or after it.
GLOBAL_OPTIONS_DEFAULT = "global_options"
_REFUSED_PREFIX = "refused_"


def _global_options(
    parser: argparse.ArgumentParser, *, suppress: bool, accepted: Sequence[str] | None = None
) -> None:
    """Add the global options to ``parser`` (skipping any it defines itself); those not in
    ``accepted`` (when given) hidden, under a dest that marks them as given."""

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
        if accepted is not None and flag not in accepted:
            kwargs = {
                **kwargs,
                "dest": _REFUSED_PREFIX + kwargs["dest"],
                "default": argparse.SUPPRESS,
                "help": argparse.SUPPRESS,
            }
        # A subcommand with an option of its own by that name (``backup set --endpoint``)
        # keeps it: argparse refuses the duplicate with ArgumentError.
        with contextlib.suppress(argparse.ArgumentError):
            parser.add_argument(flag, **kwargs)


def refused_global_option(args: argparse.Namespace) -> str | None:
    """The global option given to a subcommand that does not use it, as a one-line
    reason; None when there is none. Before the subcommand, an option counts as given
    when it differs from its default (AWS_ENDPOINT_URL in the shell is not a --endpoint)."""
    accepted = getattr(args, GLOBAL_OPTIONS_DEFAULT, None)
    if accepted is None:
        return None
    before_subcommand = {
        "--endpoint": args.target_endpoint not in (None, os.environ.get("AWS_ENDPOINT_URL")),
        "--json": bool(args.json_output),
        "--stack": args.stack_name != default_stack_name(),
        "--region": args.region is not None,
    }
    after_subcommand = {
        "--endpoint": "target_endpoint",
        "--json": "json_output",
        "--stack": "stack_name",
        "--region": "region",
    }
    for flag, dest in after_subcommand.items():
        if flag in accepted:
            continue
        if before_subcommand[flag] or hasattr(args, _REFUSED_PREFIX + dest):
            takes = f" (it takes {', '.join(accepted)})" if accepted else ""
            return (
                f"{flag} does not apply to `{PROG} {args.command_path}`: it runs its own "
                f"stack on this machine{takes}"
            )
    return None


# The module of pixflare/commands/ that registers each command, so that running one
# imports only its own module (the others pull in the local stack, Pillow, the backup
# pipeline...: about 0.15 s a run). tests/unit/test_cli_main.py checks it against what
# the modules register; a command missing here still works, by importing them all.
COMMAND_MODULES: dict[str, str] = {
    "backup": "backup",
    "cron": "cron",
    "delete": "images",
    "demo": "demo",
    "dlq": "dlq",
    "domain": "domain",
    "keys": "keys",
    "list": "images",
    "local": "local",
    "restore": "images",
    "stats": "views",
    "status": "images",
    "upload": "images",
    "views": "views",
}
_VALUED_GLOBAL_OPTIONS = ("--endpoint", "--stack", "--region")


def invoked_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs (its first word after the global options), if any."""
    tokens = iter(argv)
    for token in tokens:
        if token in _VALUED_GLOBAL_OPTIONS:
            next(tokens, None)
        elif not token.startswith("-"):
            return token
    return None


def command_modules(argv: Sequence[str] | None) -> list[str]:
    """The modules of pixflare/commands/ to import: the invoked command's alone when it
    is known; otherwise (no command, --help, a typo) every one."""
    command = invoked_command(argv) if argv is not None else None
    if command in COMMAND_MODULES:
        return [COMMAND_MODULES[command]]
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__))


def build_parser(argv: Sequence[str] | None = None) -> CommandParser:
    """The parser of every command; given the command line, only of the one it runs."""
    parser = CommandParser(
        prog=PROG,
        description="Pixflare jobs on AWS: uploads, queues, daily jobs, backups, "
        "custom domains; and the embedded local stack.",
    )
    _global_options(parser, suppress=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in command_modules(argv):
        module = importlib.import_module(f"{commands.__name__}.{module_name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    for path, sub in walk_subcommands(parser):
        accepted = sub.get_default(GLOBAL_OPTIONS_DEFAULT)
        if accepted is not None:
            sub.set_defaults(command_path=" ".join(path))
        _global_options(sub, suppress=True, accepted=accepted)
    return parser


@contextlib.contextmanager
def logs_to(stream: TextIO, service: str = SERVICE_NAME) -> Iterator[None]:
    """While a command runs, the shared Powertools logger writes to ``stream`` (stderr)
    as ``service``; afterwards it is as it was (an embedding test keeps its setup)."""
    from lambdas.shared.observability import logger

    handler = logger.registered_handler
    previous_stream = (
        handler.setStream(stream) if isinstance(handler, logging.StreamHandler) else None
    )
    previous_service = logger.get_current_keys().get("service")
    logger.append_keys(service=service)
    try:
        yield
    finally:
        logger.append_keys(service=previous_service)
        if previous_stream is not None and isinstance(handler, logging.StreamHandler):
            handler.setStream(previous_stream)


def _has_credentials() -> bool:
    try:
        return boto3.session.Session().get_credentials() is not None
    except BotoCoreError:
        return False


def endpoint_problem(endpoint: str, *, from_environment: bool) -> str | None:
    """Why ``endpoint`` cannot be used (no scheme, no host), in one line; None if fine."""
    named = "AWS_ENDPOINT_URL" if from_environment else "--endpoint"
    parsed = urlsplit(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        bare = endpoint.split("://", 1)[-1].strip("/") or "127.0.0.1:4566"
        return (
            f"{named} {endpoint!r} is not a URL: write it with its scheme, "
            f"e.g. http://{bare} for a local stack"
        )
    return None


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


def resolve_image_argument(args: argparse.Namespace, settings: Callable[[], Settings]) -> None:
    """Every command's IMAGE_ID, here once: a full id stays, a unique prefix becomes the
    id it names (the commands take ``args.image_id`` as a full id); ImageIdError if not."""
    if isinstance(getattr(args, "image_id", None), str):
        args.image_id = resolve_image_id(
            args.image_id, lambda: ImageRepository(settings().require("images_table"))
        )


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    endpoint: str | None = args.target_endpoint
    region: str | None = args.region
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(err_stream)
        return 2
    refused = refused_global_option(args)
    if refused:
        err_stream.write(f"{PROG}: {refused}\n")
        return 2
    if "--endpoint" not in getattr(args, GLOBAL_OPTIONS_DEFAULT, ("--endpoint",)):
        endpoint = None  # AWS_ENDPOINT_URL is for the commands that talk to a stack
    ctx = LazyCommandContext(
        settings=None,  # type: ignore[arg-type]
        endpoint=endpoint,
        json_output=bool(args.json_output),
        stdout=out,
        stderr=err_stream,
    )
    ctx._resolve = lambda: resolve_settings(stack=args.stack_name, endpoint=endpoint, region=region)
    if endpoint:
        problem = endpoint_problem(
            endpoint, from_environment=endpoint == os.environ.get("AWS_ENDPOINT_URL")
        )
        if problem:
            err_stream.write(f"{PROG}: {problem}\n")
            return 2
    try:
        with logs_to(err_stream):
            prepare_environment(endpoint, region)
            resolve_image_argument(args, lambda: ctx.settings)
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
