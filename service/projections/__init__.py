"""The service's inline views, each built from the log in the append's own transaction."""

from __future__ import annotations

from eventstore import Projector
from service.projections.invoices import InvoiceView
from service.projections.ledger import LedgerView
from service.projections.users import UsersView


def all_projectors() -> list[Projector]:
    """Every view of the service, in the order they are applied."""
    return [InvoiceView(), LedgerView(), UsersView()]
