"""Accounts: registering a user, and an admin's top-up of a buyer's balance."""

from __future__ import annotations

from dataclasses import dataclass

from eventstore import ANY
from service.application.commands import Command, Context
from service.application.handling import Application, Attempt, latest
from service.domain.accounts import decide_registration, decide_top_up
from service.domain.balance import evolve_balance
from service.domain.events import UserRegistered
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
class TopUp(Command[int]):
    """Credit a buyer's balance (support and development); answers the new balance."""

    by: str
    username: str
    amount: int


async def register_user(app: Application, command: RegisterUser, context: Context) -> None:
    stream = user_stream(command.username)

    async def attempt(tx: Attempt) -> None:
        existing = await tx.load(stream, latest)
        assert existing is None or isinstance(existing, UserRegistered)
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


async def top_up(app: Application, command: TopUp, context: Context) -> int:
    async def attempt(tx: Attempt) -> None:
        account = await tx.load(user_stream(command.username), latest)
        assert account is None or isinstance(account, UserRegistered)
        event = decide_top_up(account, command.amount, command.by, app.clock())
        # A credit cannot overdraw anything, so it needs no expected version.
        tx.append(balance_stream(command.username), [event], context.metadata(), expected=ANY)

    await app.run(attempt)
    balance, _ = await app.load(balance_stream(command.username), evolve_balance)
    return balance.amount if balance else 0
