"""Which HTTP status each refusal's code answers with: the HTTP layer's business alone.

The domain and the application name a refusal by a stable ``code``; a code not listed here is a
client's mistake the request itself shows (400).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from service.domain.errors import DomainError

STATUS_OF_CODE: Final = MappingProxyType(
    {
        "FORBIDDEN": 403,
        "CONFLICT": 409,
        "IDEMPOTENCY_KEY_REUSED": 409,
        "PAYMENT_ID_REUSED": 409,
        "USER_EXISTS": 409,
        "WEBHOOK_ENDPOINT_NOT_FOUND": 404,
        "WEBHOOK_MESSAGE_NOT_FOUND": 404,
    }
)


def status_of(error: DomainError) -> int:
    """The HTTP status ``error`` answers with."""
    return STATUS_OF_CODE.get(error.code, 400)
