"""The webhook events: an endpoint a platform registered, and each message to it with its
delivery attempts, in the past tense as frozen dataclasses.

An endpoint's events are on its stream (``webhook-endpoint-<id>``), a message's on its own
(``webhook-message-<id>``): a message's attempts are decided on its stream's version, so two
senders can never both record the same attempt, and endpoints change without touching them.
Secrets are stored encrypted (``secret``: a Fernet token of the ``whsec_…`` text): a reader of
the database alone cannot sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class WebhookEndpointCreated:
    endpoint: str
    service: str
    url: str
    event_types: tuple[str, ...]
    description: str
    secret: str  # encrypted
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEndpointUpdated:
    """The fields a PATCH changed, all given (the endpoint as it is after the change)."""

    endpoint: str
    url: str
    event_types: tuple[str, ...]
    description: str
    disabled: bool
    updated_by: str
    updated_at: datetime
    reason: str = ""  # why the service itself disabled it (410, failing for days)


@dataclass(frozen=True, slots=True)
class WebhookSecretRotated:
    """A new secret signs from now on; the previous one signs beside it until ``old_until``."""

    endpoint: str
    secret: str  # encrypted
    old_until: datetime
    rotated_by: str
    rotated_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEndpointDeleted:
    endpoint: str
    deleted_by: str
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookMessageQueued:
    """A message to an endpoint, derived from one event of the log (``source_position``)."""

    message: str
    endpoint: str
    service: str
    invoice: str
    event_type: str
    body: str  # the JSON text sent, exactly: every attempt sends the same bytes
    source_position: int
    queued_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookDeliveryAttempted:
    """One attempt: what the receiver answered (``status`` 0: no answer, ``error`` says why),
    and what comes next: ``outcome`` delivered, pending (``next_attempt_at``) or failed."""

    message: str
    endpoint: str
    attempt: int
    at: datetime
    status: int
    duration_ms: int
    response: str  # the first 1 KiB of the answer
    error: str
    outcome: str
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookMessageResent:
    """Sent again on request (resend, or recover since a time): due at once, a new round of
    retries."""

    message: str
    endpoint: str
    resent_by: str
    resent_at: datetime


WebhookEvent = (
    WebhookEndpointCreated
    | WebhookEndpointUpdated
    | WebhookSecretRotated
    | WebhookEndpointDeleted
    | WebhookMessageQueued
    | WebhookDeliveryAttempted
    | WebhookMessageResent
)

WEBHOOK_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        WebhookEndpointCreated,
        WebhookEndpointUpdated,
        WebhookSecretRotated,
        WebhookEndpointDeleted,
        WebhookMessageQueued,
        WebhookDeliveryAttempted,
        WebhookMessageResent,
    )
}
