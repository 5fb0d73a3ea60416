"""The service's inline views, each built from the log in the append's own transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import Projector, RecordedEvent
from service.domain.events import decode
from service.projections.invoices import INVOICE_STREAM_PREFIX, InvoiceView
from service.projections.ledger import MONEY_EVENTS, LedgerView
from service.projections.users import UsersView


class ServiceViews:
    """Every view of the service as one projector, so each event is decoded once, not once per
    view (a replay decodes every event of the log)."""

    name = "service-views"

    def __init__(self) -> None:
        self.views = (InvoiceView(), LedgerView(), UsersView())

    def setup(self, conn: sqlite3.Connection) -> None:
        for view in self.views:
            view.setup(conn)

    def reset(self, conn: sqlite3.Connection) -> None:
        for view in self.views:
            view.reset(conn)

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        # Only what some view reads: reservations and idempotency records are never decoded.
        decoded = [
            (recorded, decode(recorded))
            for recorded in events
            if recorded.stream_id.startswith(INVOICE_STREAM_PREFIX)
            or recorded.type in MONEY_EVENTS
            or recorded.type == "UserRegistered"
        ]
        for view in self.views:
            view.apply_decoded(conn, decoded)


def all_projectors() -> list[Projector]:
    """The projectors the service opens its store with."""
    return [ServiceViews()]
