"""Credentials as the API takes them, made by the tests without logging in (no scrypt)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta

from service.config import Config
from service.security import TokenClaims, issue_token


def bearer(
    config: Config,
    clock: Callable[[], datetime],
    username: str,
    role: str = "buyer",
    platform: str | None = None,
) -> dict[str, str]:
    """A token signed with the app's own secret, valid for a day of ``clock``'s time."""
    claims = TokenClaims(username, role, platform, clock() + timedelta(hours=24))
    return {"Authorization": f"Bearer {issue_token(claims, config.token_secret.encode())}"}


def basic(username: str, password: str | None = None) -> dict[str, str]:
    """Basic credentials; the password defaults to the username (the development accounts)."""
    raw = f"{username}:{password if password is not None else username}".encode()
    return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
