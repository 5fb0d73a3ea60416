"""Stream names: which stream of the log holds each aggregate's events.

An invoice (``invoice-<id>``), a buyer's balance (``balance-<username>``), a marketplace invoice
number's reservation (``onmarket-<invoice_onmarket>``), an idempotency key and a user account
each have a stream of their own; the command handlers append to them and the views select
invoice streams by their prefix.
"""

from __future__ import annotations

import hashlib
from typing import Final

INVOICE_STREAM_PREFIX: Final = "invoice-"


def invoice_stream(invoice: str) -> str:
    return f"{INVOICE_STREAM_PREFIX}{invoice}"


def balance_stream(username: str) -> str:
    return f"balance-{username}"


def reservation_stream(invoice_onmarket: str) -> str:
    return f"onmarket-{invoice_onmarket}"


def user_stream(username: str) -> str:
    return f"user-{username}"


def idempotency_stream(username: str, key: str) -> str:
    # Hashed: a client's key may be long or contain anything a stream id must not.
    digest = hashlib.sha256(f"{username}\n{key}".encode()).hexdigest()[:40]
    return f"idempotency-{digest}"


def webhook_endpoint_stream(endpoint: str) -> str:
    return f"webhook-endpoint-{endpoint}"


def webhook_message_stream(message: str) -> str:
    return f"webhook-message-{message}"
