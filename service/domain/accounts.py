"""Accounts: registering a user (a username is taken once, for good), disabling and enabling
an account, and topping up a buyer's balance. Pure: the account's state, if any, and the time
come in as arguments."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from service.domain import errors
from service.domain.events import (
    BalanceToppedUp,
    Event,
    UserDisabled,
    UserEnabled,
    UserRegistered,
)


@dataclass(frozen=True, slots=True)
class Account:
    """An account as its stream (``user-<name>``) tells it: its registration and whether it is
    enabled."""

    registered: UserRegistered
    enabled: bool = True

    @property
    def username(self) -> str:
        return self.registered.username

    @property
    def role(self) -> str:
        return self.registered.role

    @property
    def platform(self) -> str | None:
        return self.registered.platform


def evolve_account(state: Account | None, event: Event) -> Account | None:
    """The fold of an account's stream."""
    if isinstance(event, UserRegistered):
        return Account(event)
    if state is None:  # nothing but a registration starts an account's stream
        return None
    if isinstance(event, UserDisabled):
        return replace(state, enabled=False)
    if isinstance(event, UserEnabled):
        return replace(state, enabled=True)
    return state


def decide_registration(
    existing: Account | None,
    username: str,
    role: str,
    platform: str | None,
    password_hash: str,
    now: datetime,
) -> UserRegistered:
    if existing is not None:
        raise errors.UserExists()
    return UserRegistered(username, role, platform, password_hash, now)


def decide_disable(account: Account | None, by: str, now: datetime) -> list[Event]:
    """Disable an account; an account already disabled stays as it is (no event)."""
    if account is None:
        raise errors.UserNotFound()
    if not account.enabled:
        return []
    return [UserDisabled(account.username, by, now)]


def decide_enable(account: Account | None, by: str, now: datetime) -> list[Event]:
    """Enable a disabled account; an enabled one stays as it is (no event)."""
    if account is None:
        raise errors.UserNotFound()
    if account.enabled:
        return []
    return [UserEnabled(account.username, by, now)]


def decide_top_up(account: Account | None, amount: int, by: str, now: datetime) -> BalanceToppedUp:
    """Credit a buyer's balance; only buyers have one."""
    if account is None:
        raise errors.UserNotFound()
    if account.role != "buyer":
        raise errors.NotABuyer()
    return BalanceToppedUp(account.username, amount, by, now)
