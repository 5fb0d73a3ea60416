"""The application's refusals: what no aggregate decides, but the handling of a command (a race
lost too often, an idempotency key or a gateway payment id reused)."""

from __future__ import annotations

from service.domain.errors import DomainError


class Conflict(DomainError):
    message, code = "Too many concurrent changes; retry the request", "CONFLICT"


class IdempotencyKeyReused(DomainError):
    message = "Idempotency-Key was already used with a different request"
    code = "IDEMPOTENCY_KEY_REUSED"


class PaymentIdReused(DomainError):
    message = "This payment id was already recorded for another invoice"
    code = "PAYMENT_ID_REUSED"
