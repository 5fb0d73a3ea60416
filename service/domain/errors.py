"""Domain errors: a refused decision, with the message the API documents and a stable code.

Messages are the exact strings of the seeds where the seeds give one; ``code`` is the stable
machine-readable name clients should match on instead. Which HTTP status a code answers with is
the HTTP layer's business (``service.http.errors``), not the domain's.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command the domain refuses: ``code`` names the reason, ``errors`` the fields."""

    message = "Bad request"
    code = "BAD_REQUEST"

    def __init__(self, detail: str | None = None, errors: dict[str, Any] | None = None) -> None:
        super().__init__(detail or self.message)
        self.detail = detail
        self.errors = errors


class InvoiceNotFound(DomainError):
    message, code = "Invoice not found", "INVOICE_NOT_FOUND"


class TransactionNotFound(DomainError):
    message, code = "Transaction not found", "TRANSACTION_NOT_FOUND"


class ExpiredInvoice(DomainError):
    message, code = "EXPIRED INVOICE", "INVOICE_EXPIRED"


class AlreadyCanceled(DomainError):
    message, code = "TRANSACTION IS ALREADY CANCELED", "TRANSACTION_ALREADY_CANCELED"


class AlreadyRefunded(DomainError):
    # A refunded transaction was canceled after payment; the seeds have no message of its own.
    message, code = "TRANSACTION IS ALREADY CANCELED", "TRANSACTION_ALREADY_REFUNDED"


class RefundInProcess(DomainError):
    message, code = "REFUND ALREADY IN PROCESS", "REFUND_ALREADY_IN_PROCESS"


class AlreadyCompleted(DomainError):
    message, code = "TRANSACTION IS ALREADY COMPLETED", "TRANSACTION_ALREADY_COMPLETED"


class NotPaid(DomainError):
    message, code = "TRANSACTION IS NOT PAID", "TRANSACTION_NOT_PAID"


class AlreadyPaid(DomainError):
    # A mark-paid of an invoice that was paid already (completed or refunded since, too).
    message, code = "INVOICE IS ALREADY PAID", "INVOICE_ALREADY_PAID"


class AmountMismatch(DomainError):
    # A batch item's stated amount is not the transaction's amount + freight + insurance.
    message, code = "AMOUNT DOES NOT MATCH THE TRANSACTION", "AMOUNT_MISMATCH"


class InsufficientBalance(DomainError):
    message, code = "Insufficient balance", "INSUFFICIENT_BALANCE"


class InvoiceOnmarketInUse(DomainError):
    message, code = "Invalid JSON Format", "INVOICE_ONMARKET_IN_USE"


class SellerNotFound(DomainError):
    # A line's seller is not an existing, enabled buyer-role account: a payout to it would go to
    # money nobody can withdraw. ``errors`` names each such line, as a validation error does.
    message, code = "Invalid JSON Format", "SELLER_NOT_FOUND"


class BuyerMismatch(DomainError):
    message, code = "Invalid JSON Format", "BUYER_MISMATCH"


class TransactionRequired(DomainError):
    message, code = "Invalid JSON Format", "VALIDATION"


class PaidAmountMismatch(DomainError):
    message, code = "Paid amount does not match the invoice", "PAID_AMOUNT_MISMATCH"


class UserExists(DomainError):
    message, code = "User already exists", "USER_EXISTS"


class UserNotFound(DomainError):
    message, code = "User not found", "USER_NOT_FOUND"


class NotABuyer(DomainError):
    message, code = "Only buyer accounts have a balance to top up", "NOT_A_BUYER"


class Forbidden(DomainError):
    message, code = "Forbidden", "FORBIDDEN"


# -- a checkout's own invariants: the API's schema refuses these first, with the same ``errors``,
# so over HTTP they answer as a validation error always has; every other caller meets them here.


class TotalMismatch(DomainError):
    message, code = "Invalid JSON Format", "TOTAL_AMOUNT_MISMATCH"


class TotalNotPositive(DomainError):
    message, code = "Invalid JSON Format", "TOTAL_AMOUNT_NOT_POSITIVE"


class InvoiceOnmarketRepeated(DomainError):
    message, code = "Invalid JSON Format", "INVOICE_ONMARKET_REPEATED"


class WaybillNotAllowed(DomainError):
    message, code = "Invalid JSON Format", "WAYBILL_NOT_ALLOWED"


class CommissionAboveAmount(DomainError):
    message, code = "Invalid JSON Format", "COMMISSION_ABOVE_AMOUNT"
