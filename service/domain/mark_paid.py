"""Marking a PENDING invoice paid out of band: the decision of ``POST /invoice/mark-paid``.

Marketplaces take bank transfers outside the gateway; their back office then marks the invoice
paid with the transfer's reference and a reason. The invoice becomes PAID as if the gateway had
paid it (channel ``MANUAL``), and everything a paid invoice can do follows (done, cancel by
refund). Pure, like ``service.domain.invoice``: the time comes in with the call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from service.domain import errors
from service.domain.events import InvoiceMarkedPaid
from service.domain.invoice import CANCELED, EXPIRED, PENDING, Invoice

MANUAL: Final = "MANUAL"
"""The payment channel of an out-of-band payment."""


def decide_mark_paid(
    state: Invoice, *, reference: str, reason: str, by: str, now: datetime
) -> list[InvoiceMarkedPaid]:
    """Mark a PENDING invoice PAID; refuse any other with its state's documented message.

    Every state an invoice reaches only after being paid (PAID, COMPLETED, REFUNDED, a
    transaction's refund in process) answers ``INVOICE IS ALREADY PAID``: marking it paid again
    would invent money in escrow."""
    status = state.status_at(now)  # past expired_at it is EXPIRED, recorded or not
    if status == EXPIRED:
        raise errors.ExpiredInvoice()
    if status == CANCELED:
        raise errors.AlreadyCanceled()
    if status != PENDING:
        raise errors.AlreadyPaid()
    created = state.created
    return [
        InvoiceMarkedPaid(
            created.invoice,
            created.total_amount,
            created.source,
            MANUAL,
            reference,
            reason,
            by,
            now,
        )
    ]
