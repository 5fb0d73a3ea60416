"""The command line: ``python -m service serve | users add|disable|enable | rebuild | verify``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from eventstore import (
    EventStoreError,
    RecordedEvent,
    UnsupportedLocation,
    VerifyReport,
    open_store,
    verify_store,
)
from eventstore.sqlite import SQLiteEventStore
from service.app import make_gateway, make_service, utc_now
from service.application import (
    Context,
    DisableUser,
    EnableUser,
    RegisterUser,
    UserExists,
    UserNotFound,
)
from service.config import Config, ConfigError, load_config
from service.domain.services import SERVICES
from service.domain.streams import invoice_stream
from service.migration import Copied, MigrationRefused, copy_log, display, rebuild_and_verify
from service.presenters import history_entry
from service.progress import Progress
from service.security import hash_password
from service.serving import serve
from service.storage.sqlite.backup import backup_database
from service.storage.sqlite.views_check import compare_views_with_replay
from service.views.sqlite import SQLiteReadModel, all_projectors
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

    serve = command("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers", type=int, help="service processes sharing the port (default: 1)"
    )
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
    disable = users_commands.add_parser(
        "disable", help="refuse an account's logins, tokens and Basic credentials from now on"
    )
    disable.add_argument("name")
    disable.set_defaults(command=_disable_user)
    enable = users_commands.add_parser("enable", help="let a disabled account log in again")
    enable.add_argument("name")
    enable.set_defaults(command=_enable_user)

    rebuild = command("rebuild", help="empty the views and replay the log into them")
    rebuild.set_defaults(command=_rebuild)

    history = command("history", help="an invoice's events, from the log")
    history.add_argument("invoice")
    history.add_argument("--json", action="store_true", help="JSON for machines")
    history.set_defaults(command=_history)

    backup = command("backup", help="an online, consistent copy of the database (it is verified)")
    backup.add_argument("path", help="the copy to write (must not exist)")
    backup.set_defaults(command=_backup)

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
    migrate.set_defaults(command=_migrate_store)

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
        workers=getattr(args, "workers", None),
    )


def _serve(config: Config, args: argparse.Namespace) -> int:
    return serve(config)


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
        store = await SQLiteEventStore.open(config.database, projectors=all_projectors())
        async with store:
            service = make_service(store, make_gateway(config), config)
            command = RegisterUser(args.name, args.role, args.platform, hash_password(password))
            await service.handle(command, Context(_cli_actor()))

    try:
        asyncio.run(add())
    except UserExists:
        print(f"error: user {args.name!r} already exists", file=sys.stderr)
        return 1
    print(f"created {args.role} account {args.name!r}")
    return 0


def _disable_user(config: Config, args: argparse.Namespace) -> int:
    return _switch_user(config, args.name, DisableUser(args.name), "disabled")


def _enable_user(config: Config, args: argparse.Namespace) -> int:
    return _switch_user(config, args.name, EnableUser(args.name), "enabled")


def _switch_user(config: Config, name: str, command: DisableUser | EnableUser, done: str) -> int:
    """Disable or enable ``name``: an event on the account's stream, naming who did it."""
    if not Path(config.database).exists():
        print(f"error: {config.database} does not exist", file=sys.stderr)
        return 2

    async def switch() -> bool:
        store = await SQLiteEventStore.open(config.database, projectors=all_projectors())
        async with store:
            service = make_service(store, make_gateway(config), config)
            return await service.handle(command, Context(_cli_actor()))

    try:
        changed = asyncio.run(switch())
    except UserNotFound:
        print(f"error: no user {name!r}", file=sys.stderr)
        return 1
    print(f"account {name!r} {done}" if changed else f"account {name!r} was already {done}")
    return 0


def _cli_actor() -> str:
    """Who the log records as having run a command: the operator's login name."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:  # no login name in this environment (a bare container)
        return "cli"


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            print("error: the passwords differ", file=sys.stderr)
            raise SystemExit(2)
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _rebuild(config: Config, args: argparse.Namespace) -> int:
    if not Path(config.database).exists():
        print(f"error: {config.database} does not exist", file=sys.stderr)
        return 2
    progress = Progress("rebuilding views")

    async def rebuild() -> int:
        async with await open_store(config.database, projectors=all_projectors()) as store:
            return await store.rebuild_projections(progress)

    count = asyncio.run(rebuild())
    elapsed = progress.finish()
    print(f"rebuilt the views from {count:,} events in {elapsed:.1f}s")
    return 0


def _history(config: Config, args: argparse.Namespace) -> int:
    async def read() -> list[RecordedEvent]:
        async with await open_store(config.database, projectors=all_projectors()) as store:
            return [event async for event in store.read_stream(invoice_stream(args.invoice))]

    if not Path(config.database).exists():
        print(f"error: {config.database} does not exist", file=sys.stderr)
        return 2
    events = asyncio.run(read())
    if not events:
        print(f"error: no invoice {args.invoice!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([history_entry(event) for event in events], indent=2))
        return 0
    first = events[0].data
    print(
        f"{args.invoice}  {first['service']} {first['source']}  buyer {first['username']}"
        f"  total {first['total_amount']:,}"
    )
    for event in events:
        entry = history_entry(event)
        print(
            f"  #{entry['position']:<8} {entry['recorded_at']}  {entry['type']:<22}"
            f" by {entry['actor'] or '?':<22} {_summary(event)}"
        )
    return 0


# "expected": what the invoice asked, beside the "amount" of a payment that was not that;
# "reference" and "reason": a mark-paid's, as its platform or admin gave them.
_SUMMARY_KEYS = (
    "invoice_onmarket",
    "amount",
    "expected",
    "seller_amount",
    "commission",
    "payment_id",
    "reference",
    "reason",
)
# Text a caller wrote: shown quoted and escaped, so that a control character in it cannot
# move the cursor or rewrite the lines of the operator's terminal.
_FREE_TEXT = frozenset({"reference", "reason"})


def _summary(event: RecordedEvent) -> str:
    """The event's gist for a person: amounts and who, not every field."""
    data = event.data
    parts = [_shown(key, data[key]) for key in _SUMMARY_KEYS if data.get(key) is not None]
    return ", ".join(parts)


def _shown(key: str, value: object) -> str:
    if isinstance(value, int):
        return f"{key.replace('_', ' ')} {value:,}"
    if key in _FREE_TEXT:
        return f"{key} {json.dumps(value)}"  # ASCII: no C1 control either
    return f"{key} {value}"


def _backup(config: Config, args: argparse.Namespace) -> int:
    source, target = Path(config.database), Path(args.path)
    if not source.exists():
        print(f"error: {source} does not exist", file=sys.stderr)
        return 2
    if target.exists():
        print(f"error: {target} exists; choose a new path", file=sys.stderr)
        return 2
    if not target.parent.is_dir():
        print(f"error: the folder {target.parent} does not exist", file=sys.stderr)
        return 2
    report = asyncio.run(backup_database(source, target))
    if not report.ok:
        print(f"FAILED: the copy does not verify: {report.reason}", file=sys.stderr)
        return 1
    print(
        f"backup written to {target}: {report.events_checked:,} events, verified;"
        f" head position {report.head_position}, head hash {report.head_hash}"
    )
    return 0


def _reconcile(config: Config, args: argparse.Namespace) -> int:
    async def reconcile() -> Counter[str]:
        gateway = make_gateway(config)
        try:
            async with await SQLiteEventStore.open(
                config.database, projectors=all_projectors()
            ) as store:
                service = make_service(store, gateway, config)
                return await reconcile_all(
                    SQLiteReadModel(store),
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


def _migrate_store(config: Config, args: argparse.Namespace) -> int:
    source, target = args.source, args.target
    for location in (source, target):
        if "://" not in location and not Path(location).parent.is_dir():
            print(f"error: the folder of {location} does not exist", file=sys.stderr)
            return 2
    if "://" not in source and not Path(source).is_file():
        print(f"error: {source} does not exist", file=sys.stderr)
        return 2
    if source == target:
        print("error: the source and the target are the same store", file=sys.stderr)
        return 2
    copying, rebuilding = Progress("copying events"), Progress("rebuilding views")

    async def migrate() -> tuple[Copied, VerifyReport]:
        copied = await copy_log(source, target, copying)
        copying.finish()
        return copied, await rebuild_and_verify(target, rebuilding)

    try:
        copied, verified = asyncio.run(migrate())
    except (MigrationRefused, UnsupportedLocation, ValueError) as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    elapsed = rebuilding.finish()
    resumed = f" (resumed after position {copied.resumed_after:,})" if copied.resumed_after else ""
    print(
        f"copied {copied.copied:,} events{resumed} from {display(source)} to {display(target)};"
        f" views rebuilt in {elapsed:.1f}s"
    )
    if not verified.ok:
        print(f"FAILED: the copy does not verify: {verified.reason}", file=sys.stderr)
        return 1
    print(
        f"verified: {verified.events_checked:,} events, head position"
        f" {verified.head_position:,}, hash chain intact"
    )
    return 0


def _verify(config: Config, args: argparse.Namespace) -> int:
    database = Path(config.database)
    if not database.exists():
        print(f"error: {database} does not exist", file=sys.stderr)
        return 2

    async def verify() -> int:
        # Not opened as a store: verifying a file (a backup, say) must not change it.
        report = await verify_store(database)
        if not report.ok:
            where = f" at position {report.first_bad_position}" if report.first_bad_position else ""
            print(f"FAILED: the log does not verify{where}: {report.reason}")
            return 1
        print(f"log ok: {report.events_checked:,} events, hash chain intact, guards in place")
        differences = await compare_views_with_replay(database)
        for difference in differences:
            print(f"FAILED: view {difference.table} differs from a replay: {difference.detail}")
        if differences:
            return 1
        print("views ok: equal to a fresh replay of the log")
        return 0

    return asyncio.run(verify())
