"""`pixflare local up`: the embedded stack in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import signal
import threading
from pathlib import Path
from typing import Any

from pixflare.context import CommandContext, CommandError
from pixflare.local.cron import ScheduleError
from pixflare.local.stack import DEFAULT_PORT, LocalStack, LocalStackError, port_is_free
from pixflare.local.template import TemplateError


def register(subparsers: Any) -> None:
    local = subparsers.add_parser("local", help="the embedded local stack (no AWS account)")
    commands = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)
    up = commands.add_parser(
        "up",
        help="run the local stack in the foreground",
        description="Starts moto's server on 127.0.0.1, creates the resources of the "
        "synthesized CDK template (or --template FILE), runs each of the template's "
        "functions from its deployment artifacts (code asset and layers, CPython 3.12 "
        "processes under the Lambda Runtime Interface Client) behind their event source "
        "mappings and schedules, serves the template's HTTP API on another loopback port "
        "(payload format 2.0 events, through the same environments; the page at /), and "
        "prints a line containing 'ready', then 'api: URL' and the AWS_ENDPOINT_URL to "
        "export for the other commands. Function logs and Lambda's REPORT lines follow. "
        "Ctrl-C or SIGTERM stops it within about a second (exit 0); state is kept in "
        "memory only. With --json, everything else goes to stderr and, when it stops, "
        "stdout gets one JSON document: each function's invocations, cold starts, Init "
        "Duration, Duration and Max Memory Used. Of the global options it takes --json "
        "only: it is the stack the others' --endpoint points at.",
    )
    up.add_argument(
        "--port",
        type=int,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}, or a free one if that is taken)",
    )
    up.add_argument(
        "--api-port",
        type=int,
        default=0,
        metavar="N",
        help="port on 127.0.0.1 for the HTTP API and the page (default: a free one)",
    )
    up.add_argument("--template", metavar="FILE", help="a synthesized template (JSON)")
    up.add_argument(
        "--account-concurrency",
        type=int,
        metavar="N",
        help="the account's Lambda concurrency limit, shared by every function (default: "
        "none); a throttled batch is retried until its visibility timeout, then comes back",
    )
    up.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CDK context for the synth (repeatable), e.g. -c enableQueues=false",
    )
    up.set_defaults(func=run_up, global_options=("--json",))


def parse_context(pairs: list[str]) -> dict[str, str]:
    context = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"context must be KEY=VALUE, got {pair!r}")
        context[key] = value
    return context


def load_template(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as err:
        raise CommandError(f"{path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise CommandError(f"{path} is not JSON: {err}") from None
    if not isinstance(document, dict) or "Resources" not in document:
        raise CommandError(f"{path} is not a CloudFormation template (no Resources)")
    return document


def run_up(args: argparse.Namespace, ctx: CommandContext) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        raise CommandError("--port must be between 0 and 65535")
    if not 0 <= args.api_port <= 65535:
        raise CommandError("--api-port must be between 0 and 65535")
    port = args.port
    if port is None:
        port = DEFAULT_PORT if port_is_free("127.0.0.1", DEFAULT_PORT) else 0
    if args.account_concurrency is not None and args.account_concurrency < 1:
        raise CommandError("--account-concurrency must be at least 1")
    template = load_template(args.template) if args.template else None
    context = parse_context(args.context)
    if template is None:
        ctx.info("synthesizing the CDK app...")
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    # With --json, stdout is kept for the one document written at the end.
    out = ctx.stderr if ctx.json_output else ctx.stdout
    stack = LocalStack(
        port=port,
        template=template,
        context=context or None,
        out=out,
        account_concurrency=args.account_concurrency,
        api_port=args.api_port,
    )
    try:
        try:
            stack.start()
        except (LocalStackError, TemplateError, ScheduleError) as err:
            raise CommandError(str(err)) from None
        out.write(
            f"  export AWS_ENDPOINT_URL={stack.endpoint}  "
            "# then: pixflare upload photo.jpg --owner me --album trip --wait 30\n"
        )
        out.flush()
        while not stop.wait(0.5):
            pass
        out.write("stopping...\n")
        out.flush()
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.write("stopped\n")
    out.flush()
    # The process ends next: collecting moto's and boto3's object graphs at exit took
    # 0.7-1.7 s of the stop (measured, bench/local_stop.py); left to the OS instead.
    atexit.register(gc.freeze)
    if ctx.json_output:
        ctx.emit(
            {
                "stackName": stack.stack_name,
                "endpoint": stack.endpoint,
                "apiUrl": stack.api_url or None,
                "functions": stack.function_reports(),
            }
        )
    return 0
