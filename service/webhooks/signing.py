"""Webhook secrets and signatures, exactly as the Standard Webhooks specification says.

A secret is ``whsec_`` + base64 of 32 random bytes; the HMAC-SHA256 key is those bytes. The
signature of a delivery is ``v1,`` + base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}"),
several space-separated when several secrets sign (a rotation's grace period).

Secrets are kept in the log encrypted with Fernet (AES-128-CBC and HMAC-SHA256) under the
``webhook_secret_key`` setting, so a reader of the database alone cannot sign; the key is
derived from the setting's text with SHA-256, so any long random text will do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signatures(secrets_: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one signature per secret, space-separated."""
    return " ".join(signature(secret, message_id, timestamp, body) for secret in secrets_)


def verify(secret: str, message_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any of the header's ``v1`` signatures is ``secret``'s (the receiving side)."""
    expected = signature(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in header.split(" "))


class SecretUnreadable(ValueError):
    """A sealed secret that this ``webhook_secret_key`` cannot open (the key was changed)."""


class SecretBox:
    """Encrypts secrets for the log and decrypts them for signing."""

    def __init__(self, key_text: str) -> None:
        key = base64.urlsafe_b64encode(hashlib.sha256(key_text.encode()).digest())
        self._fernet = Fernet(key)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as error:
            raise SecretUnreadable(
                "a webhook secret sealed under another webhook_secret_key"
            ) from error
