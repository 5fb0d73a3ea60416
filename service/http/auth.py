"""Who is asking: logins, Bearer tokens for buyers, Basic credentials for platform accounts.

Every failure answers ``401 {"message": "Auth Error"}`` whatever went wrong, so a caller learns
nothing about which usernames exist; the reason is logged (never the secret). Password checks
(scrypt, about 50 ms of CPU) run off the event loop, an unknown user costs the same time as a
wrong password, and a successful Basic login is remembered for a few minutes under a keyed hash
of the credentials, so platform calls do not each pay for scrypt.

A signature proves only that the service issued a token (or checked a password) once; every
request also checks the account as it stands now: a token or Basic login of an account that no
longer exists, is disabled, or now has another role or platform is refused. That check reads
the users view by key through a cache whose entries live ``ACCOUNT_CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from aiohttp import web

from service.application import Actor
from service.http.request_keys import USERNAME
from service.http.responses import ApiError
from service.security import (
    CredentialsError,
    TokenClaims,
    TokenError,
    issue_token,
    parse_basic,
    parse_bearer,
    read_token,
    verify_password,
)
from service.views import ReadModel
from service.views.read_model import UserRecord

log = structlog.get_logger("service.auth")

# Checked for unknown users, so their answer takes as long as a wrong password's: a valid scrypt
# hash (the same parameters as real ones) of a random password that was thrown away. A constant,
# so that no app start pays 50 ms of scrypt to make one.
DECOY_HASH = "scrypt$16384$8$1$KUbVAAvsJteGEz2vXfDocQ$3jms8MVIGMFRxrbUXrjh1Wtd3kBkacXdihb2oZ0U_Tk"
BASIC_CACHE_SECONDS = 300.0
BASIC_CACHE_SIZE = 4096
TOKEN_CACHE_SIZE = 4096
# How long an account's state read from the users view is trusted. Accounts are disabled by
# another process (``python -m service users disable``), so no in-process event can invalidate
# the entry; checking the account's stream version instead would cost the same lookup by key as
# reading its row. A short time to live bounds the staleness: a disabled account's tokens are
# refused within half a second, while a buyer's burst of requests reads the row at most twice a
# second (a cache hit is a dict lookup; a miss is a ~10 µs lookup by key on the loop's thread).
ACCOUNT_CACHE_SECONDS = 0.5
ACCOUNT_CACHE_SIZE = 4096
# Password checks running at once. Each scrypt takes 16 MiB and a core for ~50 ms: a burst of
# logins (or of wrong passwords) waits its turn instead of growing memory without bound.
CONCURRENT_PASSWORD_CHECKS = 2


def auth_error() -> ApiError:
    return ApiError(401, "Auth Error", "AUTH_ERROR")


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "Forbidden", "FORBIDDEN", {"_schema": [detail]})


class Authenticator:
    def __init__(
        self,
        views: ReadModel,
        *,
        secret: str,
        token_ttl: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._views = views
        self._secret = secret.encode()
        self._token_ttl = token_ttl
        self._clock = clock
        self._verified: OrderedDict[bytes, tuple[Actor, float]] = OrderedDict()
        # Tokens whose signature was checked, with their claims: a buyer's next request skips
        # the HMAC and parsing (the expiry is still checked every time).
        self._read_tokens: OrderedDict[str, TokenClaims] = OrderedDict()
        # Basic checks in progress, by credentials: the same credentials asked for at once
        # (a platform's burst after a restart) share one scrypt.
        self._checking: dict[bytes, asyncio.Task[Actor]] = {}
        self._hashing = asyncio.Semaphore(CONCURRENT_PASSWORD_CHECKS)
        # Accounts as read lately from the users view, with the monotonic time they go stale.
        self._accounts: OrderedDict[str, tuple[UserRecord | None, float]] = OrderedDict()

    async def login(self, username: str, password: str) -> tuple[str, datetime]:
        """A signed token for valid credentials; ``Auth Error`` otherwise."""
        actor = await self._check_password(username, password)
        expires_at = self._clock() + self._token_ttl
        claims = TokenClaims(actor.username, actor.role, actor.platform, expires_at)
        return issue_token(claims, self._secret), expires_at

    async def bearer(self, request: web.Request) -> Actor:
        """The actor of a ``Bearer`` token, if its account still exists, is enabled and has the
        token's role and platform."""
        try:
            token = parse_bearer(request.headers.get("Authorization"))
            now = self._clock()
            claims = self._read_tokens.get(token)
            if claims is None or claims.expires_at <= now:
                claims = read_token(token, self._secret, now)
                self._remember_token(token, claims)
        except (CredentialsError, TokenError) as error:
            log.warning("bearer refused", reason=str(error))
            raise auth_error() from None
        actor = Actor(claims.username, claims.role, claims.platform)
        refusal = self._refusal(actor, await self._account(claims.username))
        if refusal is not None:
            log.warning("bearer refused", username=claims.username, reason=refusal)
            raise auth_error()
        request[USERNAME] = claims.username
        return actor

    async def basic(self, request: web.Request) -> Actor:
        """The actor of ``Basic`` credentials."""
        try:
            username, password = parse_basic(request.headers.get("Authorization"))
        except CredentialsError as error:
            log.warning("basic credentials refused", reason=str(error))
            raise auth_error() from None
        key = hmac.new(self._secret, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._verified.get(key)
        if cached is not None and cached[1] > time.monotonic():
            actor = cached[0]
        else:
            actor = await self._check_once(key, username, password)
        # Remembered credentials are only a password check saved: the account may have been
        # disabled since.
        refusal = self._refusal(actor, await self._account(username))
        if refusal is not None:
            log.warning("login refused", username=username, reason=refusal)
            raise auth_error()
        request[USERNAME] = actor.username
        return actor

    async def _account(self, username: str) -> UserRecord | None:
        """The account as the users view shows it, at most ``ACCOUNT_CACHE_SECONDS`` old."""
        cached = self._accounts.get(username)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        account = await self._views.user(username)
        self._accounts[username] = (account, now + ACCOUNT_CACHE_SECONDS)
        self._accounts.move_to_end(username)
        if len(self._accounts) > ACCOUNT_CACHE_SIZE:
            self._accounts.popitem(last=False)
        return account

    @staticmethod
    def _refusal(actor: Actor, account: UserRecord | None) -> str | None:
        """Why ``actor`` may not act as ``account`` stands now; None if it may."""
        if account is None:
            return "no such account"
        if not account.enabled:
            return "account disabled"
        if (account.role, account.platform) != (actor.role, actor.platform):
            return "the account's role does not match"
        return None

    async def _check_once(self, key: bytes, username: str, password: str) -> Actor:
        checking = self._checking.get(key)
        if checking is None:
            checking = asyncio.ensure_future(self._check_password(username, password))
            self._checking[key] = checking
            checking.add_done_callback(lambda _: self._checking.pop(key, None))
        # shield: one caller going away must not cancel the check the others wait for.
        actor = await asyncio.shield(checking)
        self._remember(key, actor)
        return actor

    async def _check_password(self, username: str, password: str) -> Actor:
        user = await self._views.user(username)
        stored = user.password_hash if user is not None else DECOY_HASH
        async with self._hashing:
            valid = await asyncio.to_thread(verify_password, password, stored)
        if user is None or not valid:
            log.warning("login refused", username=username, reason="unknown user or wrong password")
            raise auth_error()
        if not user.enabled:  # checked after scrypt: a disabled account answers as slowly
            log.warning("login refused", username=username, reason="account disabled")
            raise auth_error()
        return Actor(username, user.role, user.platform)

    def _remember_token(self, token: str, claims: TokenClaims) -> None:
        self._read_tokens[token] = claims
        if len(self._read_tokens) > TOKEN_CACHE_SIZE:
            self._read_tokens.popitem(last=False)

    def _remember(self, key: bytes, actor: Actor) -> None:
        self._verified[key] = (actor, time.monotonic() + BASIC_CACHE_SECONDS)
        self._verified.move_to_end(key)
        while len(self._verified) > BASIC_CACHE_SIZE:
            self._verified.popitem(last=False)


def require_role(actor: Actor, *roles: str) -> None:
    if actor.role not in roles:
        raise forbidden(f"This endpoint is for {' or '.join(roles)} accounts.")
