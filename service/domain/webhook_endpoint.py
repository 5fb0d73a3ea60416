"""A webhook endpoint: its state folded from its stream, and the decisions on it.

Pure: the secret comes in already encrypted, the time with the command. An endpoint is its
platform's (``service``) alone; a deleted one answers as a missing one. A platform's endpoint
selects the event types it lists, every type when it lists none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from service.domain.errors import DomainError
from service.domain.events import Event
from service.domain.webhook_events import (
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointUpdated,
    WebhookEvent,
    WebhookSecretRotated,
)

# How long the previous secret goes on signing beside a rotated one (SPEC: 24 h).
ROTATION_GRACE: Final = timedelta(hours=24)


class WebhookEndpointNotFound(DomainError):
    message, code = "Webhook endpoint not found", "WEBHOOK_ENDPOINT_NOT_FOUND"


class WebhookUrlRefused(DomainError):
    message, code = "Webhook URL not allowed", "WEBHOOK_URL_REFUSED"


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint: str
    service: str
    url: str
    event_types: tuple[str, ...]
    description: str
    secret: str  # encrypted
    old_secret: str | None  # encrypted; signs beside ``secret`` until ``old_until``
    old_until: datetime | None
    disabled: bool
    disabled_reason: str
    deleted: bool
    created_at: datetime
    updated_at: datetime

    def selects(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def signing_secrets(self, now: datetime) -> list[str]:
        """The encrypted secrets that sign at ``now``: the current one, and the previous one
        within its grace period."""
        if self.old_secret is not None and self.old_until is not None and now < self.old_until:
            return [self.secret, self.old_secret]
        return [self.secret]


def evolve_endpoint(state: Endpoint | None, event: Event) -> Endpoint:
    """The endpoint after ``event``."""
    if isinstance(event, WebhookEndpointCreated):
        return Endpoint(
            event.endpoint,
            event.service,
            event.url,
            event.event_types,
            event.description,
            event.secret,
            None,
            None,
            False,
            "",
            False,
            event.created_at,
            event.created_at,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before WebhookEndpointCreated")
    if isinstance(event, WebhookEndpointUpdated):
        return replace(
            state,
            url=event.url,
            event_types=event.event_types,
            description=event.description,
            disabled=event.disabled,
            disabled_reason=event.reason if event.disabled else "",
            updated_at=event.updated_at,
        )
    if isinstance(event, WebhookSecretRotated):
        return replace(
            state,
            secret=event.secret,
            old_secret=state.secret,
            old_until=event.old_until,
            updated_at=event.rotated_at,
        )
    if isinstance(event, WebhookEndpointDeleted):
        return replace(state, deleted=True, updated_at=event.deleted_at)
    return state


def visible(state: Endpoint | None, service: str | None) -> Endpoint:
    """The endpoint if it exists, is not deleted and is ``service``'s (None: an admin's, any);
    otherwise the same refusal as a missing one, so existence does not leak."""
    if state is None or state.deleted or (service is not None and state.service != service):
        raise WebhookEndpointNotFound()
    return state


def decide_creation(
    state: Endpoint | None,
    endpoint: str,
    service: str,
    url: str,
    event_types: tuple[str, ...],
    description: str,
    secret: str,
    by: str,
    now: datetime,
) -> list[WebhookEvent]:
    if state is not None:  # a random id taken twice: not the caller's to resolve
        raise ValueError(f"webhook endpoint {endpoint} exists already")
    return [
        WebhookEndpointCreated(endpoint, service, url, event_types, description, secret, by, now)
    ]


def decide_update(
    state: Endpoint,
    *,
    url: str | None,
    event_types: tuple[str, ...] | None,
    description: str | None,
    disabled: bool | None,
    by: str,
    now: datetime,
    reason: str = "",
) -> list[WebhookEvent]:
    """The endpoint with the given fields changed; nothing when nothing changes."""
    after = (
        state.url if url is None else url,
        state.event_types if event_types is None else event_types,
        state.description if description is None else description,
        state.disabled if disabled is None else disabled,
    )
    if after == (state.url, state.event_types, state.description, state.disabled):
        return []
    return [WebhookEndpointUpdated(state.endpoint, *after, by, now, reason)]


def decide_auto_disable(state: Endpoint, reason: str, now: datetime) -> list[WebhookEvent]:
    """The service disables an endpoint that is gone (410) or has failed for days; one
    already disabled or deleted stays as it is."""
    if state.disabled or state.deleted:
        return []
    return decide_update(
        state,
        url=None,
        event_types=None,
        description=None,
        disabled=True,
        by="system:webhook-sender",
        now=now,
        reason=reason,
    )


def decide_rotation(state: Endpoint, secret: str, by: str, now: datetime) -> list[WebhookEvent]:
    return [WebhookSecretRotated(state.endpoint, secret, now + ROTATION_GRACE, by, now)]


def decide_deletion(state: Endpoint, by: str, now: datetime) -> list[WebhookEvent]:
    return [WebhookEndpointDeleted(state.endpoint, by, now)]
