"""What the API answers: a schema for every answer, checked against real answers by the tests.

Answers name every field they carry (unknown keys are refused when a test validates a real
answer), and their validators state the values a client can rely on. Handlers name the schema
of each answer they give (``routes.answer``), and the OpenAPI document shows it for the status.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.domain.services import SERVICE_PREFIXES, SERVICES, SOURCES
from service.domain.statuses import INVOICE_STATUSES, TRANSACTION_STATUSES
from service.http.schemas.base import FullMatch, doc

API_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
INVOICE_ID = rf"^({'|'.join(SERVICE_PREFIXES.values())})[0-9A-Za-z]{{13}}$"


def _time(**kwargs: Any) -> fields.String:
    """A time as the API writes it: ISO 8601 UTC with milliseconds and Z."""
    return fields.String(validate=validate.Regexp(API_TIME), **kwargs)


def _one_of(*values: str, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(values), **kwargs)


class MessageAnswer(Schema):
    message = fields.String(required=True)


class ErrorAnswer(MessageAnswer):
    """Every error: the documented message, a stable code, and for validation errors the bad
    fields (nested for transactions: {"transaction": {"0": {"amount": [...]}}})."""

    message = fields.String(required=True, metadata=doc("The documented message."))
    code = fields.String(
        required=True,
        validate=FullMatch(r"^[A-Z][A-Z0-9_]*$"),
        metadata=doc("Stable and machine-readable: match on this."),
    )
    errors = fields.Dict(metadata=doc("Each bad field and what is wrong with it."))


class TokenAnswer(Schema):
    token = fields.String(required=True, metadata=doc("Send as `Authorization: Bearer <token>`."))
    expired_at = _time(required=True)


class TransactionStatusAnswer(Schema):
    invoice_onmarket = fields.String(required=True)
    status = _one_of("PENDING", "PAID", required=True)


class XenditCheckoutAnswer(Schema):
    """source XENDIT: pay at `payment_url`."""

    payment_url = fields.String(required=True)
    invoice = fields.String(required=True, validate=validate.Regexp(INVOICE_ID))
    xendit_invoice = fields.String(required=True)
    expired_at = _time(required=True)
    transaction = fields.List(fields.Nested(TransactionStatusAnswer), required=True)


class QrisCheckoutAnswer(Schema):
    """source QRIS: pay by scanning `qr_string` (EMVCo / QRIS)."""

    invoice = fields.String(required=True, validate=validate.Regexp(INVOICE_ID))
    xendit_invoice = fields.String(required=True)
    qr_string = fields.String(required=True)
    amount = fields.Integer(required=True)
    expired_at = _time(required=True)


class BalanceCheckoutAnswer(Schema):
    """source BALANCE: paid at once from the buyer's balance."""

    invoice = fields.String(required=True, validate=validate.Regexp(INVOICE_ID))
    xendit_invoice = fields.String(required=True)
    expired_at = _time(required=True)
    transaction = fields.List(fields.Nested(TransactionStatusAnswer), required=True)
    amount = fields.Integer(required=True)
    status = _one_of("PAID", required=True)


CHECKOUT_ANSWERS: tuple[type[Schema], ...] = (
    XenditCheckoutAnswer,
    QrisCheckoutAnswer,
    BalanceCheckoutAnswer,
)


class CheckoutAnswer(Schema):
    """A checkout's answer: exactly one of the three shapes in ``CHECKOUT_ANSWERS``."""

    payment_url = fields.String()
    invoice = fields.String(required=True)
    xendit_invoice = fields.String(required=True)
    qr_string = fields.String()
    amount = fields.Integer()
    status = fields.String()
    expired_at = fields.String(required=True)
    transaction = fields.List(fields.Nested(TransactionStatusAnswer))

    @validates_schema(pass_original=True)
    def one_shape(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        fitting = [shape for shape in CHECKOUT_ANSWERS if not shape().validate(original)]
        if len(fitting) != 1:
            raise ValidationError("Must be exactly one of the XENDIT, QRIS and BALANCE answers.")


class DetailTransactionAnswer(Schema):
    invoice_onmarket = fields.String(required=True)
    seller_username = fields.String(required=True)
    amount = fields.Integer(required=True)
    freight_charge = fields.Integer(required=True)
    insurance_amount = fields.Integer(required=True)
    commission_onmarket = fields.Integer(required=True)
    waybill_number = fields.String(required=True, allow_none=True)
    status = _one_of(*TRANSACTION_STATUSES, required=True)


class StatusChangeAnswer(Schema):
    status = _one_of(*INVOICE_STATUSES, required=True)
    at = _time(required=True, metadata=doc("When the invoice reached this status."))
    actor = fields.String(
        required=True,
        allow_none=True,
        metadata=doc("Who: a user, a platform account, `gateway`, or `system:…`."),
    )


class DetailAnswer(Schema):
    """An invoice as the buyer sees it (the seed's fields plus each store's transaction)."""

    id = fields.String(required=True, metadata=doc("The invoice's sequence number."))
    username = fields.String(required=True, metadata=doc("The buyer."))
    type = _one_of(*(f"{service} CHECKOUT" for service in SERVICES), required=True)
    amount = fields.Integer(required=True)
    xendit_invoice = fields.String(required=True, metadata=doc("The gateway's reference."))
    invoice = fields.String(required=True, validate=validate.Regexp(INVOICE_ID))
    status = _one_of(*INVOICE_STATUSES, required=True)
    src = _one_of(*SOURCES, required=True)
    xendit_url = fields.String(required=True, allow_none=True)
    qr_string = fields.String(required=True, allow_none=True)
    expired_at = _time(required=True)
    createdAt = _time(required=True)
    updatedAt = _time(required=True)
    transaction = fields.List(fields.Nested(DetailTransactionAnswer), required=True)
    status_history = fields.List(
        fields.Nested(StatusChangeAnswer),
        required=True,
        metadata=doc(
            "Each status the invoice reached, oldest first; a PENDING invoice past its expiry"
            " ends with EXPIRED at `expired_at` by `system:expiry`, as its `status` says."
        ),
    )


class HistoryEventAnswer(Schema):
    position = fields.Integer(required=True, metadata=doc("The event's position in the log."))
    version = fields.Integer(required=True, metadata=doc("The event's version in its invoice."))
    type = fields.String(required=True, metadata=doc("InvoiceCreated, InvoicePaid, …"))
    data = fields.Dict(required=True)
    recorded_at = _time(required=True)
    actor = fields.String(required=True, allow_none=True)
    request_id = fields.String(required=True, allow_none=True)


class HistoryAnswer(Schema):
    """An invoice's events, oldest first."""

    invoice = fields.String(required=True)
    events = fields.List(fields.Nested(HistoryEventAnswer), required=True)


class LedgerEntryAnswer(Schema):
    position = fields.Integer(required=True)
    account = fields.String(required=True)
    amount = fields.Integer(required=True, metadata=doc("Negative for a debit."))
    type = fields.String(required=True)
    invoice = fields.String(required=True, allow_none=True)
    recorded_at = _time(required=True)


class BalanceAnswer(Schema):
    """The caller's balances and their ledger entries, newest first."""

    username = fields.String(required=True)
    balance = fields.Integer(required=True, metadata=doc("buyer:<username>, spendable."))
    seller_balance = fields.Integer(required=True, metadata=doc("seller:<username>."))
    entries = fields.List(fields.Nested(LedgerEntryAnswer), required=True)


class TopUpAnswer(MessageAnswer):
    message = _one_of("BALANCE TOPPED UP", required=True)
    username = fields.String(required=True)
    balance = fields.Integer(required=True, metadata=doc("The new balance."))


class CancelAnswer(MessageAnswer):
    message = _one_of("INVOICE CANCELED", "REFUND IN PROCESS", required=True)


class DoneAnswer(MessageAnswer):
    message = _one_of("TRANSACTION IS COMPLETED", required=True)


class MarkPaidAnswer(MessageAnswer):
    message = _one_of("INVOICE MARKED AS PAID", required=True)


class BatchResultAnswer(Schema):
    """One item's result: what /invoice/done would have answered for it."""

    invoice_id = fields.String(required=True)
    invoice_onmarket = fields.String(required=True, allow_none=True)
    status = _one_of("success", "failed", required=True)
    code = fields.String(
        required=True, allow_none=True, metadata=doc("The refusal's code; null on success.")
    )
    message = fields.String(required=True)


class DoneBatchAnswer(Schema):
    """Each item's result, in the order of the items."""

    results = fields.List(fields.Nested(BatchResultAnswer), required=True)


class CallbackAnswer(MessageAnswer):
    message = _one_of(
        "PAID",
        "CREDITED",
        "AMOUNT_MISMATCH_CREDITED",
        "DUPLICATE",
        "EXPIRED",
        "IGNORED",
        required=True,
        metadata=doc(
            "PAID: the invoice is paid; CREDITED: a late or second payment, kept as the"
            " buyer's balance; AMOUNT_MISMATCH_CREDITED: a paid amount other than the"
            " invoice's, kept as the buyer's balance, the invoice still PENDING; DUPLICATE:"
            " this payment was recorded before; EXPIRED: the invoice expired; IGNORED: nothing"
            " to do."
        ),
    )


class HealthAnswer(Schema):
    status = _one_of("ok", required=True)
    head_position = fields.Integer(required=True, metadata=doc("The log's last position."))
    pid = fields.Integer(
        required=True,
        metadata=doc(
            "The answering process's id: with `serve --workers N`, which of the N answered."
        ),
    )


class LiveAnswer(Schema):
    status = _one_of("ok", required=True)
    pid = fields.Integer(required=True, metadata=doc("The answering process's id."))


class ReadyAnswer(Schema):
    status = _one_of("ready", required=True)
    pid = fields.Integer(required=True, metadata=doc("The answering process's id."))
    jobs = fields.List(
        fields.String(),
        required=True,
        metadata=doc("The background jobs whose runners are alive in this process."),
    )
