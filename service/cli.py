"""The command line: ``python -m service serve | users add | rebuild | verify``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from eventstore import EventStore, EventStoreError
from service.app import create_app, make_gateway, make_service, utc_now
from service.application import Context, UserExists
from service.config import Config, ConfigError, load_config
from service.http.schemas import SERVICES
from service.logging import configure_logging
from service.projections import all_projectors
from service.security import hash_password
from service.views_check import compare_views_with_replay
from service.workers.reconcile import reconcile_all

DEFAULT_CONFIG = "config.yaml"
ROLES = ("buyer", "platform", "admin")
MIN_PASSWORD = 8


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

    serve = command("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(command=_serve)

    users = commands.add_parser("users", help="manage accounts")
    users_commands = users.add_subparsers(required=True, metavar="ACTION")
    add = users_commands.add_parser(
        "add", help="create an account (password from a prompt or stdin)"
    )
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--platform", choices=SERVICES, help="the service of a platform account")
    add.add_argument("name")
    add.set_defaults(command=_add_user)

    rebuild = command("rebuild", help="empty the views and replay the log into them")
    rebuild.set_defaults(command=_rebuild)

    reconcile = command(
        "reconcile", help="ask the gateway about unsettled invoices and apply what it knows"
    )
    reconcile.set_defaults(command=_reconcile)

    verify = command("verify", help="check the hash chain, and that the views equal a fresh replay")
    verify.set_defaults(command=_verify)
    return parser


def _common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config", default=default, help=f"settings file (default: {DEFAULT_CONFIG} if present)"
    )
    parser.add_argument("--db", default=default, help="the database file (overrides the settings)")


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    return load_config(
        path,
        database=args.db,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _serve(config: Config, args: argparse.Namespace) -> int:
    configure_logging(config.log_level, config.log_format)
    web.run_app(create_app(config), host=config.host, port=config.port, print=None)
    return 0


def _add_user(config: Config, args: argparse.Namespace) -> int:
    if (args.role == "platform") != (args.platform is not None):
        print("error: --platform is required for, and only for, platform accounts", file=sys.stderr)
        return 2
    password = _read_password()
    if len(password) < MIN_PASSWORD:
        print(f"error: the password must have at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 2

    async def add() -> None:
        Path(config.database).parent.mkdir(parents=True, exist_ok=True)  # a fresh install
        store = await EventStore.open(config.database, projectors=all_projectors())
        async with store:
            service = make_service(store, make_gateway(config), config)
            await service.register_user(
                args.name, args.role, args.platform, hash_password(password), Context("cli")
            )

    try:
        asyncio.run(add())
    except UserExists:
        print(f"error: user {args.name!r} already exists", file=sys.stderr)
        return 1
    print(f"created {args.role} account {args.name!r}")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            print("error: the passwords differ", file=sys.stderr)
            raise SystemExit(2)
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _rebuild(config: Config, args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        print(f"replayed {done} of {total} events", file=sys.stderr)

    async def rebuild() -> int:
        async with await EventStore.open(config.database, projectors=all_projectors()) as store:
            return await store.rebuild_projections(progress)

    count = asyncio.run(rebuild())
    print(f"rebuilt the views from {count} events")
    return 0


def _reconcile(config: Config, args: argparse.Namespace) -> int:
    async def reconcile() -> Counter[str]:
        gateway = make_gateway(config)
        try:
            async with await EventStore.open(config.database, projectors=all_projectors()) as store:
                service = make_service(store, gateway, config)
                return await reconcile_all(
                    store,
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


def _verify(config: Config, args: argparse.Namespace) -> int:
    database = Path(config.database)
    if not database.exists():
        print(f"error: {database} does not exist", file=sys.stderr)
        return 2

    async def verify() -> int:
        async with await EventStore.open(database, projectors=all_projectors()) as store:
            report = await store.verify()
        if not report.ok:
            where = f" at position {report.first_bad_position}" if report.first_bad_position else ""
            print(f"FAILED: the log does not verify{where}: {report.reason}")
            return 1
        print(f"log ok: {report.events_checked} events, hash chain intact, guards in place")
        differences = await compare_views_with_replay(database)
        for difference in differences:
            print(f"FAILED: view {difference.table} differs from a replay: {difference.detail}")
        if differences:
            return 1
        print("views ok: equal to a fresh replay of the log")
        return 0

    return asyncio.run(verify())
