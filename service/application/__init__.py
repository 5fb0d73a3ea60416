"""Command handlers: load the streams a decision needs, decide, append with expected versions.

Commands are frozen dataclasses named as orders, grouped by family (``checkout``, ``payments``,
``platform``, ``accounts``); ``InvoiceService.handle`` carries any of them out through the one
helper in ``handling``. What other packages use is re-exported here.
"""

from service.application.accounts import DisableUser, EnableUser, RegisterUser, TopUp
from service.application.checkout import Checkout, Idempotency
from service.application.commands import Actor, Command, Context
from service.application.errors import Conflict, IdempotencyKeyReused, PaymentIdReused
from service.application.ids import new_invoice_id, payment_event_id
from service.application.mark_paid import MarkPaid
from service.application.payments import ExpireByGateway, ExpireIfDue, Reconcile, RecordPayment
from service.application.platform import (
    CancelTransaction,
    CompleteBatch,
    CompleteRefund,
    CompleteTransaction,
)
from service.application.service import InvoiceService
from service.domain.checkout import CheckoutOrder
from service.domain.errors import NotABuyer, UserExists, UserNotFound

__all__ = [
    "Actor",
    "CancelTransaction",
    "Checkout",
    "CheckoutOrder",
    "Command",
    "CompleteBatch",
    "CompleteRefund",
    "CompleteTransaction",
    "Conflict",
    "Context",
    "DisableUser",
    "EnableUser",
    "ExpireByGateway",
    "ExpireIfDue",
    "Idempotency",
    "IdempotencyKeyReused",
    "InvoiceService",
    "MarkPaid",
    "NotABuyer",
    "PaymentIdReused",
    "Reconcile",
    "RecordPayment",
    "RegisterUser",
    "TopUp",
    "UserExists",
    "UserNotFound",
    "new_invoice_id",
    "payment_event_id",
]
