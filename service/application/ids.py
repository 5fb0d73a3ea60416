"""Identifiers the application makes: new invoice ids, and the event ids a gateway payment's
events get (derived from the payment's own id, so a repeated callback cannot record twice)."""

from __future__ import annotations

import secrets
import string
import uuid

from service.domain.services import SERVICE_PREFIXES

_ID_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_PAYMENT_NAMESPACE = uuid.UUID("6f1c3f3e-6d0b-4d55-9a53-0b8e8f3c2a11")


def new_invoice_id(service: str) -> str:
    """Service prefix and 13 random characters of [0-9A-Za-z]."""
    # One draw from the operating system's randomness instead of thirteen.
    number, characters = secrets.randbelow(len(_ID_ALPHABET) ** 13), []
    for _ in range(13):
        number, digit = divmod(number, len(_ID_ALPHABET))
        characters.append(_ID_ALPHABET[digit])
    return SERVICE_PREFIXES[service] + "".join(characters)


def payment_event_id(payment_id: str, event_type: str) -> str:
    """Each event a gateway payment causes has an id derived from the payment's, so a repeated
    callback, however concurrent, can never record it twice."""
    return str(uuid.uuid5(_PAYMENT_NAMESPACE, f"payment:{payment_id}:{event_type}"))
