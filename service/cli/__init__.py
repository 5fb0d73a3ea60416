"""The command line: ``python -m service serve | users add|disable|enable | rebuild | history |
verify | backup | reconcile | migrate-store | webhooks listen``, on an SQLite file or a
PostgreSQL database alike.

Each command is a function ``(config, args) -> exit status`` in a module by what it is for:
accounts (``accounts``), reading the log (``audit``), copies of the database (``moving``),
webhook tools (``webhooks``); this
module parses the arguments and runs serve and reconcile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from eventstore import EventStoreError
from service.app import make_gateway, make_service, utc_now
from service.cli import accounts, audit, moving, webhooks
from service.cli.common import open_service_store
from service.config import Config, ConfigError, load_config
from service.domain.services import SERVICES
from service.serving import serve
from service.views.backends import read_model_of
from service.workers.reconcile import reconcile_all

DEFAULT_CONFIG = "config.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = _config(args)
        return int(args.command(config, args))
    except (ConfigError, EventStoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (``… | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    _common_options(parser, default=None)
    # The same options after the command (``verify --db FILE``); SUPPRESS keeps a value given
    # before the command from being reset by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, help: str, parents: bool = True) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[common] if parents else [])

    serving = command("serve", help="run the HTTP service")
    serving.add_argument("--host")
    serving.add_argument("--port", type=int)
    serving.add_argument(
        "--workers", type=int, help="service processes sharing the port (default: 1)"
    )
    serving.set_defaults(command=_serve)

    users = commands.add_parser("users", help="manage accounts")
    users_commands = users.add_subparsers(required=True, metavar="ACTION")
    add = users_commands.add_parser(
        "add", help="create an account (password from a prompt or stdin)", parents=[common]
    )
    add.add_argument("--role", required=True, choices=accounts.ROLES)
    add.add_argument("--platform", choices=SERVICES, help="the service of a platform account")
    add.add_argument("name")
    add.set_defaults(command=accounts.add_user)
    disable = users_commands.add_parser(
        "disable",
        help="refuse an account's logins, tokens and Basic credentials from now on",
        parents=[common],
    )
    disable.add_argument("name")
    disable.set_defaults(command=accounts.disable_user)
    enable = users_commands.add_parser(
        "enable", help="let a disabled account log in again", parents=[common]
    )
    enable.add_argument("name")
    enable.set_defaults(command=accounts.enable_user)

    rebuild = command("rebuild", help="empty the views and replay the log into them")
    rebuild.set_defaults(command=audit.rebuild)

    history = command("history", help="an invoice's events, from the log")
    history.add_argument("invoice")
    history.add_argument("--json", action="store_true", help="JSON for machines")
    history.set_defaults(command=audit.history)

    backup = command("backup", help="an online, consistent copy of the database (it is verified)")
    backup.add_argument("path", help="the copy to write (must not exist)")
    backup.set_defaults(command=moving.backup)

    reconcile = command(
        "reconcile", help="ask the gateway about unsettled invoices and apply what it knows"
    )
    reconcile.set_defaults(command=_reconcile)

    migrate = command(
        "migrate-store",
        help="copy the whole log into an empty store (SQLite file or postgresql:// URL),"
        " rebuild its views and verify it; run again to resume",
        parents=False,
    )
    migrate.add_argument("source", help="the store to copy: a file path or a URL")
    migrate.add_argument("target", help="an empty store (or one a run left half-copied)")
    migrate.set_defaults(command=moving.migrate_store)

    webhooks.add_commands(commands)

    verify = command("verify", help="check the hash chain, and that the views equal a fresh replay")
    verify.set_defaults(command=audit.verify)
    return parser


def _common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config", default=default, help=f"settings file (default: {DEFAULT_CONFIG} if present)"
    )
    parser.add_argument(
        "--db",
        default=default,
        help="the database: an SQLite file or a postgresql:// URL (overrides the settings)",
    )


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    return load_config(
        path,
        database=args.db,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        workers=getattr(args, "workers", None),
    )


def _serve(config: Config, args: argparse.Namespace) -> int:
    return serve(config)


def _reconcile(config: Config, args: argparse.Namespace) -> int:
    async def reconcile() -> Counter[str]:
        gateway = make_gateway(config)
        try:
            async with await open_service_store(config) as store:
                service = make_service(store, gateway, config)
                return await reconcile_all(
                    read_model_of(store),
                    service,
                    now=utc_now(),
                    window=timedelta(seconds=config.reconcile_window_seconds),
                )
        finally:
            await gateway.close()

    outcomes = asyncio.run(reconcile())
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
    print(f"reconciled {sum(outcomes.values())} invoices" + (f": {summary}" if summary else ""))
    return 1 if outcomes.get("failed") else 0
