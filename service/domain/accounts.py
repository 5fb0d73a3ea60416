"""Accounts: registering a user (a username is taken once, for good) and topping up a buyer's
balance. Pure: the account's registration, if any, and the time come in as arguments."""

from __future__ import annotations

from datetime import datetime

from service.domain import errors
from service.domain.events import BalanceToppedUp, UserRegistered


def decide_registration(
    existing: UserRegistered | None,
    username: str,
    role: str,
    platform: str | None,
    password_hash: str,
    now: datetime,
) -> UserRegistered:
    if existing is not None:
        raise errors.UserExists()
    return UserRegistered(username, role, platform, password_hash, now)


def decide_top_up(
    account: UserRegistered | None, amount: int, by: str, now: datetime
) -> BalanceToppedUp:
    """Credit a buyer's balance; only buyers have one."""
    if account is None:
        raise errors.UserNotFound()
    if account.role != "buyer":
        raise errors.NotABuyer()
    return BalanceToppedUp(account.username, amount, by, now)
