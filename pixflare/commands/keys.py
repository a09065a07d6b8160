"""`pixflare keys create | list | revoke`: per-owner API keys for the HTTP API.

A key is printed once, by ``create``; the table keeps only its SHA-256, so no
command can show it again. ``list`` and ``revoke`` name a key by its public id.
Clients will send a key as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import argparse
from typing import Any

from lambdas.shared.api_keys import ApiKey, ApiKeyRepository
from lambdas.shared.config import Settings
from lambdas.shared.errors import PixflareError
from pixflare.context import CommandContext, CommandError

NOT_DEPLOYED = (
    "this stack has no API keys table (no ApiKeysTableName output): deploy the "
    "current version of the stack"
)


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys", help="per-owner API keys for the HTTP API: create, list, revoke"
    )
    commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    create = commands.add_parser(
        "create",
        help="make a new API key for an owner and print it, once",
        description="Prints the new key once; only its hash is stored, so it cannot be "
        "shown again. Clients send it as `Authorization: Bearer <key>`.",
    )
    create.add_argument("--owner", required=True)
    create.set_defaults(func=run_create)

    list_parser = commands.add_parser(
        "list", help="an owner's API keys: id, created, revoked (never the key)"
    )
    list_parser.add_argument("--owner", required=True)
    list_parser.set_defaults(func=run_list)

    revoke = commands.add_parser(
        "revoke", help="revoke an API key by its id (as `keys list` shows it); again is fine"
    )
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(func=run_revoke)


def _repository(settings: Settings) -> ApiKeyRepository:
    if not settings.api_keys_table:
        raise CommandError(NOT_DEPLOYED)
    return ApiKeyRepository(settings.api_keys_table)


def _state(key: ApiKey) -> str:
    return f"revoked {key.revoked_at}" if key.revoked else "active"


def run_create(args: argparse.Namespace, ctx: CommandContext) -> int:
    repository = _repository(ctx.settings)
    try:
        created = repository.create(args.owner)
    except PixflareError as err:
        raise CommandError(f"API key not created: {err}") from None
    ctx.emit(
        created.to_public(),
        lambda: (
            f"API key {created.record.key_id} for {created.record.owner} created; "
            "store it now, it cannot be shown again:\n"
            f"{created.key}"
        ),
    )
    return 0


def run_list(args: argparse.Namespace, ctx: CommandContext) -> int:
    repository = _repository(ctx.settings)
    try:
        found = repository.list_keys(args.owner)
    except PixflareError as err:
        raise CommandError(str(err)) from None

    def human() -> str:
        if not found:
            return f"{args.owner} has no API keys"
        return "\n".join(f"{key.key_id}  created {key.created}  {_state(key)}" for key in found)

    ctx.emit([key.to_public() for key in found], human)
    return 0


def run_revoke(args: argparse.Namespace, ctx: CommandContext) -> int:
    repository = _repository(ctx.settings)
    try:
        revocation = repository.revoke(args.key_id)
    except PixflareError as err:
        raise CommandError(str(err)) from None
    key = revocation.record
    ctx.emit(
        {**key.to_public(), "alreadyRevoked": revocation.already_revoked},
        lambda: (
            f"API key {key.key_id} of {key.owner} "
            + ("was already revoked" if revocation.already_revoked else "revoked")
            + f" ({key.revoked_at}); it no longer authenticates"
        ),
    )
    return 0
