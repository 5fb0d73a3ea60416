"""The statuses of invoices and of their transactions: the one place they are named.

An invoice is PENDING until it is paid, expires or is canceled; once PAID, each store's
transaction goes on alone (REFUND_IN_PROCESS, REFUNDED, COMPLETED) and the invoice is settled
when all of them are. The API, the views and the decisions all use these names.
"""

from __future__ import annotations

from typing import Final

PENDING: Final = "PENDING"
PAID: Final = "PAID"
EXPIRED: Final = "EXPIRED"
CANCELED: Final = "CANCELED"
REFUND_IN_PROCESS: Final = "REFUND_IN_PROCESS"
REFUNDED: Final = "REFUNDED"
COMPLETED: Final = "COMPLETED"

INVOICE_STATUSES: Final = (PENDING, PAID, EXPIRED, CANCELED, COMPLETED, REFUNDED)
TRANSACTION_STATUSES: Final = (
    PENDING,
    PAID,
    EXPIRED,
    CANCELED,
    REFUND_IN_PROCESS,
    REFUNDED,
    COMPLETED,
)
# Statuses in which an invoice keeps its marketplace invoice numbers taken.
HOLDING: Final = frozenset({PENDING, PAID})
