"""An invoice's status history: each status it reached, when and by whom, oldest first.

The domain's ``evolve`` knows no actor (who acted is the recorded event's metadata), so the
history is folded beside the state from the recorded events: by the invoice view's projector
(stored in the view row, so a detail reads it for free) and by ``invoice_as_of``'s replay. One
entry each time the invoice's own status changes, not one per event. Entries are kept in the
API's shape (``{"status", "at", "actor"}``, ``at`` as ``api_time``), so the view's text is what
the answer shows and a replay writes the very same text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from eventstore import RecordedEvent
from service.domain.invoice import EXPIRED, PENDING, Invoice
from service.presenters import api_time

StatusHistory = list[dict[str, Any]]

EXPIRY_ACTOR = "system:expiry"
"""Who an expiry not yet recorded is shown as done by: the expiry task, which will record it
with this actor at this same time (the invoice's ``expired_at``)."""


def record_change(
    history: StatusHistory, before: Invoice | None, after: Invoice, recorded: RecordedEvent
) -> None:
    """Append an entry to ``history`` if ``recorded`` changed the invoice's status."""
    if before is None or before.status != after.status:
        history.append(
            {
                "status": after.status,
                "at": api_time(after.updated_at),
                "actor": recorded.metadata.get("actor"),
            }
        )


def shown_at(history: StatusHistory, state: Invoice, now: datetime) -> StatusHistory:
    """The history as the answer shows it at ``now``: a PENDING invoice past its expiry is
    EXPIRED (time is the truth), so its history ends with that expiry too, never contradicting
    the answer's ``status``."""
    if state.status == PENDING and state.status_at(now) == EXPIRED:
        expiry = {
            "status": EXPIRED,
            "at": api_time(state.created.expired_at),
            "actor": EXPIRY_ACTOR,
        }
        return [*history, expiry]
    return history


def encode_history(history: StatusHistory) -> str:
    return orjson.dumps(history).decode()


def decode_history(text: str) -> StatusHistory:
    history: StatusHistory = orjson.loads(text)
    return history
