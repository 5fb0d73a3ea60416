"""Identifiers the application makes: new invoice ids, and the event ids a gateway payment's
events get (derived from the payment's own id, so a repeated callback cannot record twice)."""

from __future__ import annotations

import string
import uuid

from eventstore.entropy import random_bytes
from service.domain.services import SERVICE_PREFIXES

_ID_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ID_NUMBERS = len(_ID_ALPHABET) ** 13
_ID_BITS = _ID_NUMBERS.bit_length()  # 78: two draws in three fall below _ID_NUMBERS
_PAYMENT_NAMESPACE = uuid.UUID("6f1c3f3e-6d0b-4d55-9a53-0b8e8f3c2a11")


def new_invoice_id(service: str) -> str:
    """Service prefix and 13 random characters of [0-9A-Za-z]."""
    # One draw of the operating system's randomness (from the pooled page: no system call
    # each), rejected and drawn again when out of range, so every id is equally likely.
    number = _ID_NUMBERS
    while number >= _ID_NUMBERS:
        number = int.from_bytes(random_bytes(10), "big") >> (80 - _ID_BITS)
    characters = []
    for _ in range(13):
        number, digit = divmod(number, len(_ID_ALPHABET))
        characters.append(_ID_ALPHABET[digit])
    return SERVICE_PREFIXES[service] + "".join(characters)


def payment_event_id(payment_id: str, event_type: str) -> str:
    """Each event a gateway payment causes has an id derived from the payment's, so a repeated
    callback, however concurrent, can never record it twice."""
    return str(uuid.uuid5(_PAYMENT_NAMESPACE, f"payment:{payment_id}:{event_type}"))
