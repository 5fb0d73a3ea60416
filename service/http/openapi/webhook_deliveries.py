"""What the OpenAPI document says about the deliveries the service sends (OpenAPI 3.1's
top-level ``webhooks``): one POST per event type, its Standard Webhooks headers, its body and
what the service does with the receiver's answer.

Each body's ``data`` lists exactly the fields ``message_data`` gives that event type (no
others: ``additionalProperties`` is false), so a test that validates a real delivery against
it notices a field added or dropped on either side.
"""

from __future__ import annotations

import re
from typing import Any, Final

from service.domain.statuses import INVOICE_STATUSES, TRANSACTION_STATUSES
from service.domain.webhook_delivery import LONGEST_RETRY_AFTER, WEBHOOK_EVENT_TYPES
from service.http.schemas.answers import API_TIME

_STRING: Final = {"type": "string"}
_AMOUNT: Final = {"type": "integer", "minimum": 0, "description": "In rupiah."}
_STORE: Final = {
    "invoice_onmarket": {**_STRING, "description": "The store's marketplace invoice number."},
    "transaction_status": {
        "enum": list(TRANSACTION_STATUSES),
        "description": "That store's transaction status after the event.",
    },
}
_COMMON: Final = {
    "invoice": {**_STRING, "description": "The invoice id."},
    "status": {"enum": list(INVOICE_STATUSES), "description": "Its status after the event."},
    "service": {**_STRING, "description": "The platform the invoice belongs to."},
    "sequence": {
        "type": "integer",
        "minimum": 1,
        "description": (
            "The invoice stream's version after the event: a receiver drops a message whose"
            " sequence is lower than one it has already seen for that invoice."
        ),
    },
}
# The fields ``message_data`` adds to ``_COMMON`` for each event type, and what the type means.
# All are always there, but for the ones in ``_OPTIONAL``.
_TYPES: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "invoice.created": ("A checkout created the invoice.", {"amount": _AMOUNT}),
    "invoice.paid": (
        "The invoice was paid (by the gateway, or marked paid by the platform).",
        {"amount": _AMOUNT, "channel": {**_STRING, "description": "`MANUAL` when marked paid."}},
    ),
    "invoice.expired": ("The invoice expired unpaid.", {}),
    "invoice.canceled": ("The invoice was canceled before it was paid.", {}),
    "invoice.completed": (
        "The last open store settled (completed or refunded) and at least one store completed:"
        " the invoice is COMPLETED. `amount` is there when a refund settled it.",
        {**_STORE, "amount": _AMOUNT},
    ),
    "invoice.refunded": (
        "The last open store's refund completed and settled the invoice as refunded.",
        {**_STORE, "amount": _AMOUNT},
    ),
    "transaction.completed": ("A store's transaction completed.", _STORE),
    "transaction.refund_requested": (
        "A refund of a store's transaction was requested.",
        {**_STORE, "amount": _AMOUNT},
    ),
    "transaction.refunded": ("A store's refund completed.", {**_STORE, "amount": _AMOUNT}),
    "payment.late_credited": (
        "A payment arrived after the invoice expired or was canceled; it was credited to the"
        " buyer's balance.",
        {"amount": _AMOUNT, "payment_id": {**_STRING, "description": "The gateway's id."}},
    ),
}
assert tuple(_TYPES) == WEBHOOK_EVENT_TYPES, "describe every webhook event type"
# invoice.completed is made by the event that settles the last store: a TransactionCompleted
# (no amount) or a RefundCompleted (its amount).
_OPTIONAL: Final = {"invoice.completed": {"amount"}}

_HEADERS: Final = (
    (
        "webhook-id",
        "The message id (`msg_…`): the same on every retry and resend, so a receiver keeps the"
        " ids it has processed and ignores a repeat.",
        {"type": "string", "pattern": "^msg_[0-9a-f]{32}$"},
    ),
    (
        "webhook-timestamp",
        "Unix seconds of this attempt. Reject one far from your clock (replays).",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
    (
        "webhook-signature",
        "`v1,` + base64 of HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with"
        " the base64-decoded part of the endpoint's `whsec_` secret, per Standard Webhooks."
        " During the 24 h after a secret rotation two signatures are sent, space-separated"
        " (`v1,<new> v1,<old>`): accept the delivery when any one matches.",
        {"type": "string", "pattern": "^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$"},
    ),
)
_RESPONSES: Final = {
    "2XX": {"description": "Delivered: no further attempt."},
    "410": {
        "description": "Gone: the message fails and the endpoint is disabled (no more"
        " deliveries until it is enabled with `PATCH /webhooks/endpoints/{endpoint}`)."
    },
    "default": {
        "description": (
            "Any other answer, a timeout or a connection error is a failure. The first attempt"
            " is made at once; a failed one is retried after 5 s, 5 min, 30 min, 2 h, 5 h,"
            " 10 h and 10 h (by default: `webhook_retry_schedule`; each ±10 %), never before"
            " the answer's `Retry-After` (seconds or an HTTP date, honoured up to"
            f" {LONGEST_RETRY_AFTER / 3600:g} h). After the last the message is failed. An"
            " endpoint failing without a success for 5 days is disabled."
        )
    },
}


def body_schema(event_type: str) -> dict[str, Any]:
    """The JSON schema of a delivery body of ``event_type``."""
    extra = _TYPES[event_type][1]
    optional = _OPTIONAL.get(event_type, set())
    return {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": event_type},
            "timestamp": {
                "type": "string",
                "pattern": API_TIME,
                "description": "When the event was recorded (not when this attempt was made).",
            },
            "data": {
                "type": "object",
                "required": [*_COMMON, *(f for f in extra if f not in optional)],
                "additionalProperties": False,
                "properties": {**_COMMON, **extra},
            },
        },
    }


def _delivery(event_type: str) -> dict[str, Any]:
    meaning = _TYPES[event_type][0]
    fields = ", ".join(f"`{name}`" for name in (*_COMMON, *_TYPES[event_type][1]))
    return {
        "post": {
            "tags": ["webhooks"],
            "summary": f"Delivery of `{event_type}`",
            "description": (
                f"{meaning} POSTed to every enabled endpoint of the invoice's service that"
                f" selects `{event_type}` (or selects none: all types), for events recorded"
                f" while it is enabled. Body: `type`, `timestamp` and `data` with {fields}."
            ),
            "operationId": "webhook" + "".join(w.title() for w in re.split(r"[._]", event_type)),
            "parameters": [
                {"in": "header", "name": name, "required": True, "description": text, "schema": s}
                for name, text, s in _HEADERS
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema(event_type)}},
            },
            "responses": _RESPONSES,
        }
    }


def webhooks() -> dict[str, Any]:
    """The document's ``webhooks``: each event type's delivery, keyed by the type."""
    return {event_type: _delivery(event_type) for event_type in WEBHOOK_EVENT_TYPES}
