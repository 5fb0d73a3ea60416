"""Accounts: registering a user, disabling and enabling one, and an admin's top-up of a
buyer's balance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from eventstore import ANY
from service.application.commands import Command, Context
from service.application.handling import Application, Attempt
from service.domain.accounts import (
    Account,
    decide_disable,
    decide_enable,
    decide_registration,
    decide_top_up,
    evolve_account,
)
from service.domain.balance import evolve_balance
from service.domain.events import Event
from service.domain.streams import balance_stream, user_stream


@dataclass(frozen=True, slots=True)
class RegisterUser(Command[None]):
    """Create an account; a username is taken once, for good. A given ``event_id`` makes the
    registration idempotent (the development accounts, created by every process)."""

    username: str
    role: str
    platform: str | None
    password_hash: str
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class DisableUser(Command[bool]):
    """Disable an account: it can no longer log in and its tokens are refused. Answers whether
    anything changed (False: it was disabled already)."""

    username: str


@dataclass(frozen=True, slots=True)
class EnableUser(Command[bool]):
    """Enable a disabled account again. Answers whether anything changed (False: it was
    enabled already)."""

    username: str


@dataclass(frozen=True, slots=True)
class TopUp(Command[int]):
    """Credit a buyer's balance (support and development); answers the new balance."""

    by: str
    username: str
    amount: int


async def register_user(app: Application, command: RegisterUser, context: Context) -> None:
    stream = user_stream(command.username)

    async def attempt(tx: Attempt) -> None:
        existing = await tx.load(stream, evolve_account)
        event = decide_registration(
            existing,
            command.username,
            command.role,
            command.platform,
            command.password_hash,
            app.clock(),
        )
        ids = None if command.event_id is None else [command.event_id]
        tx.append(stream, [event], context.metadata(), event_ids=ids)

    await app.run(attempt)


async def disable_user(app: Application, command: DisableUser, context: Context) -> bool:
    return await _switch(app, command.username, decide_disable, context)


async def enable_user(app: Application, command: EnableUser, context: Context) -> bool:
    return await _switch(app, command.username, decide_enable, context)


async def _switch(
    app: Application,
    username: str,
    decide: Callable[[Account | None, str, datetime], list[Event]],
    context: Context,
) -> bool:
    """Disable or enable an account as ``decide`` says; whether anything changed."""
    stream = user_stream(username)

    async def attempt(tx: Attempt) -> bool:
        account = await tx.load(stream, evolve_account)
        events = decide(account, context.actor, app.clock())
        tx.append(stream, events, context.metadata())
        return bool(events)

    return await app.run(attempt)


async def top_up(app: Application, command: TopUp, context: Context) -> int:
    async def attempt(tx: Attempt) -> None:
        account = await tx.load(user_stream(command.username), evolve_account)
        event = decide_top_up(account, command.amount, command.by, app.clock())
        # A credit cannot overdraw anything, so it needs no expected version.
        tx.append(balance_stream(command.username), [event], context.metadata(), expected=ANY)

    await app.run(attempt)
    balance, _ = await app.load(balance_stream(command.username), evolve_balance)
    return balance.amount if balance else 0
