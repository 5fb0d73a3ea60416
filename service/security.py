"""Passwords, signed tokens and Authorization headers: the service's small, dependency-free core
of authentication. Passwords are stored as self-describing scrypt hashes, sessions are compact
HMAC-SHA256 signed tokens that expire, and the two header parsers turn an ``Authorization``
header into credentials or a ``CredentialsError``. Nothing here logs, and no exception message
carries a password, secret or token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CredentialsError",
    "TokenClaims",
    "TokenError",
    "hash_password",
    "issue_token",
    "parse_basic",
    "parse_bearer",
    "read_token",
    "verify_password",
]

# --- base64url ---------------------------------------------------------------------------------

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url, accepting only the one canonical spelling of the bytes.

    ``urlsafe_b64decode`` silently skips characters outside the alphabet and ignores the unused
    low bits of the last character, so several strings decode to the same bytes; re-encoding
    and comparing closes that gap. Raises ``ValueError``.
    """
    if _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url_encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


# --- passwords ---------------------------------------------------------------------------------

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_DKLEN = 32
_SALT_BYTES = 16

# A stored hash decides how much work verification does, so a corrupt or hostile row must not
# be able to pin a CPU or exhaust memory; these bounds leave room to raise today's parameters.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAX_MEMORY = 256 * 1024 * 1024
_DKLEN_RANGE = range(16, 65)
_PARAM = re.compile(r"[1-9][0-9]{0,7}")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL's default limit (32 MiB) would refuse parameters above today's, e.g. n=2**15.
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_MAX_MEMORY)


def _utf8(text: str) -> bytes | None:
    # None rather than the UnicodeEncodeError, whose .object is the text: for a password, that
    # exception would carry the secret along as the __context__ of whatever is raised next.
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def hash_password(password: str) -> str:
    """Encoded as 'scrypt$<n>$<r>$<p>$<salt b64url>$<hash b64url>' so parameters can change later.

    Raises ``ValueError`` if ``password`` cannot be encoded as UTF-8 (lone surrogates).
    """
    raw = _utf8(password)
    if raw is None:
        raise ValueError("password is not valid Unicode text")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(raw, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_DKLEN)
    return "$".join(
        [
            "scrypt",
            str(_SCRYPT_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            _b64url_encode(salt),
            _b64url_encode(digest),
        ]
    )


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time compare (hmac.compare_digest); False (never an exception) for a malformed
    encoding or wrong password.

    The scrypt parameters and the hash length are taken from ``encoded``, so hashes made with
    older parameters keep verifying after the defaults change.
    """
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    if not all(_PARAM.fullmatch(part) for part in parts[1:4]):
        return False
    n, r, p = (int(part) for part in parts[1:4])
    if n < 2 or n > _MAX_N or n & (n - 1) or r > _MAX_R or p > _MAX_P:
        return False
    if 128 * r * (n + p + 2) > _MAX_MEMORY:
        return False
    try:
        salt = _b64url_decode(parts[4])
        expected = _b64url_decode(parts[5])
    except ValueError:
        return False
    candidate = _utf8(password)
    if candidate is None or not salt or len(expected) not in _DKLEN_RANGE:
        return False
    try:
        actual = _scrypt(candidate, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        # The bounds above should make this unreachable; a stored hash still never raises.
        return False
    return hmac.compare_digest(actual, expected)


# --- tokens ------------------------------------------------------------------------------------

_TOKEN_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_TOKEN_KEYS = frozenset({"sub", "role", "platform", "exp", "v"})


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """Who a token speaks for and until when.

    ``expires_at`` travels as whole epoch milliseconds, so a token read back carries it floored
    to the millisecond, in UTC.
    """

    username: str
    role: str  # "buyer" | "platform" | "admin"
    platform: str | None  # "ONMARKET" | "ONDELIVERY" | "ONTICKET" for platform accounts
    expires_at: datetime  # timezone-aware UTC


class TokenError(Exception):
    """A token is malformed, has a bad signature, or has expired (the message says which, without
    the token)."""


def _is_aware(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.tzinfo.utcoffset(moment) is not None


def _check_secret(secret: bytes) -> None:
    # HMAC accepts an empty key, and a token "signed" with it is forgeable by anyone.
    if not secret:
        raise ValueError("token secret must not be empty")


def _sign(payload_part: bytes, secret: bytes) -> bytes:
    return _b64url_encode(hmac.digest(secret, payload_part, "sha256")).encode("ascii")


def issue_token(claims: TokenClaims, secret: bytes) -> str:
    """base64url(payload json, no padding) + '.' + base64url(HMAC-SHA256(secret, payload part)).
    Payload keys: sub, role, platform, exp (integer epoch milliseconds), v (=1).

    ``exp`` is floored to the millisecond so a token never outlives the expiry asked for.
    Raises ``ValueError`` for a naive ``expires_at`` or an empty ``secret``.
    """
    _check_secret(secret)
    if not _is_aware(claims.expires_at):
        raise ValueError("expires_at must be timezone-aware")
    payload = {
        "sub": claims.username,
        "role": claims.role,
        "platform": claims.platform,
        "exp": (claims.expires_at - _EPOCH) // _ONE_MS,
        "v": _TOKEN_VERSION,
    }
    # ensure_ascii keeps any str (even lone surrogates) encodable and the bytes unambiguous.
    payload_part = _b64url_encode(json.dumps(payload, separators=(",", ":")).encode("ascii"))
    return payload_part + "." + _sign(payload_part.encode("ascii"), secret).decode("ascii")


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, which Python counts as int.
    return isinstance(value, int) and not isinstance(value, bool)


def read_token(token: str, secret: bytes, now: datetime) -> TokenClaims:
    """Verify signature first (constant time), then version, then expiry (expired when now >=
    expires_at). Raises TokenError.

    Raises ``ValueError`` (a caller's mistake, not a bad token) for a naive ``now`` or an empty
    ``secret``.
    """
    _check_secret(secret)
    if not _is_aware(now):
        raise ValueError("now must be timezone-aware")

    # The signature is compared in its encoded form, so a token has exactly one valid spelling:
    # no alternative base64 of the same MAC (unused low bits) is accepted.
    payload_part, dot, signature_part = token.partition(".")
    if (
        not dot
        or not payload_part
        or _B64URL.fullmatch(payload_part) is None
        or _B64URL.fullmatch(signature_part) is None
    ):
        raise TokenError("malformed token")
    expected = _sign(payload_part.encode("ascii"), secret)
    if not hmac.compare_digest(expected, signature_part.encode("ascii")):
        raise TokenError("bad token signature")

    try:
        payload = json.loads(_b64url_decode(payload_part).decode("utf-8"))
    except (ValueError, RecursionError):
        raise TokenError("malformed token payload") from None
    if not isinstance(payload, dict):
        raise TokenError("malformed token payload")
    version = payload.get("v")
    if not _is_int(version) or version != _TOKEN_VERSION:
        raise TokenError("unsupported token version")
    if set(payload) != _TOKEN_KEYS:
        raise TokenError("malformed token payload")

    username, role, platform, exp = (payload[k] for k in ("sub", "role", "platform", "exp"))
    if (
        not isinstance(username, str)
        or not isinstance(role, str)
        or not (platform is None or isinstance(platform, str))
        or not _is_int(exp)
    ):
        raise TokenError("malformed token payload")
    try:
        expires_at = _EPOCH + exp * _ONE_MS
    except OverflowError:
        raise TokenError("malformed token payload") from None

    if now >= expires_at:
        raise TokenError("token has expired")
    return TokenClaims(username=username, role=role, platform=platform, expires_at=expires_at)


# --- Authorization headers ---------------------------------------------------------------------

# RFC 6750's b64token: what may follow "Bearer ".
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class CredentialsError(Exception):
    """Missing or malformed Authorization header."""


def _split_scheme(header: str | None, scheme: str) -> str:
    if not header:
        raise CredentialsError("missing Authorization header")
    name, space, value = header.partition(" ")
    # Schemes are ASCII tokens (RFC 9110) and str.lower() folds some non-ASCII letters to ASCII.
    if not space or not name.isascii() or name.lower() != scheme:
        raise CredentialsError(f"Authorization header is not a {scheme.title()} credential")
    if not value:
        raise CredentialsError("empty credentials in Authorization header")
    return value


def parse_bearer(header: str | None) -> str:
    """'Bearer <token>' -> token. The scheme is case-insensitive, followed by exactly one space
    and a non-empty RFC 6750 token. Raises ``CredentialsError``."""
    value = _split_scheme(header, "bearer")
    if _B64TOKEN.fullmatch(value) is None:
        raise CredentialsError("malformed Bearer token")
    return value


def parse_basic(header: str | None) -> tuple[str, str]:
    """'Basic <b64(user:pass)>' -> (user, pass). Strict base64, UTF-8, must contain ':'; the
    user ends at the first ':', so the password may contain ':'. Raises ``CredentialsError``."""
    decoded = _decode_basic(_split_scheme(header, "basic"))
    if decoded is None:
        raise CredentialsError("malformed Basic credentials")
    username, colon, password = decoded.partition(":")
    if not colon:
        raise CredentialsError("malformed Basic credentials")
    return username, password


def _decode_basic(value: str) -> str | None:
    # None rather than raising from inside the except: a UnicodeDecodeError holds the raw bytes,
    # password included, and would ride along as the CredentialsError's __context__.
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
