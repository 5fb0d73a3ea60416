"""``users add | disable | enable``: accounts, created and switched through the log."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from service.app import make_gateway, make_service
from service.application import (
    Context,
    DisableUser,
    EnableUser,
    RegisterUser,
    UserExists,
    UserNotFound,
)
from service.cli.common import cli_actor, missing_database, open_service_store
from service.config import Config
from service.security import hash_password

ROLES = ("buyer", "platform", "admin")
MIN_PASSWORD = 8


def add_user(config: Config, args: argparse.Namespace) -> int:
    if (args.role == "platform") != (args.platform is not None):
        print("error: --platform is required for, and only for, platform accounts", file=sys.stderr)
        return 2
    password = _read_password()
    if len(password) < MIN_PASSWORD:
        print(f"error: the password must have at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 2

    async def add() -> None:
        async with await open_service_store(config) as store:  # creates a fresh install's file
            service = make_service(store, make_gateway(config), config)
            command = RegisterUser(args.name, args.role, args.platform, hash_password(password))
            await service.handle(command, Context(cli_actor()))

    try:
        asyncio.run(add())
    except UserExists:
        print(f"error: user {args.name!r} already exists", file=sys.stderr)
        return 1
    print(f"created {args.role} account {args.name!r}")
    return 0


def disable_user(config: Config, args: argparse.Namespace) -> int:
    return _switch_user(config, args.name, DisableUser(args.name), "disabled")


def enable_user(config: Config, args: argparse.Namespace) -> int:
    return _switch_user(config, args.name, EnableUser(args.name), "enabled")


def _switch_user(config: Config, name: str, command: DisableUser | EnableUser, done: str) -> int:
    """Disable or enable ``name``: an event on the account's stream, naming who did it."""
    if missing_database(config):
        return 2

    async def switch() -> bool:
        async with await open_service_store(config) as store:
            service = make_service(store, make_gateway(config), config)
            return await service.handle(command, Context(cli_actor()))

    try:
        changed = asyncio.run(switch())
    except UserNotFound:
        print(f"error: no user {name!r}", file=sys.stderr)
        return 1
    print(f"account {name!r} {done}" if changed else f"account {name!r} was already {done}")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            print("error: the passwords differ", file=sys.stderr)
            raise SystemExit(2)
        return first
    return sys.stdin.readline().rstrip("\r\n")
