"""Request and answer schemas (marshmallow): every body the API reads or writes.

Requests refuse unknown fields, and money is a strict integer: booleans, floats, numeric strings
and negatives are refused, and no amount may exceed 10^12. Answer schemas document what each
endpoint returns and are checked against real answers by the tests. The OpenAPI document
(``service/http/openapi.py``) is generated from these classes, so each constraint is written
once, as a validator that both refuses bad input and documents the rule; ``metadata``
descriptions become the document's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from service.domain.events import TransactionLine

MAX_AMOUNT = 10**12
SERVICES = ("ONMARKET", "ONDELIVERY", "ONTICKET")
SOURCES = ("XENDIT", "BALANCE", "QRIS")
MAX_TRANSACTIONS = 100
MAX_POSITION = 2**63 - 1  # SQLite's largest integer: the log's positions cannot go beyond
INVOICE_STATUSES = ("PENDING", "PAID", "EXPIRED", "CANCELED", "COMPLETED", "REFUNDED")
TRANSACTION_STATUSES = (
    "PENDING",
    "PAID",
    "EXPIRED",
    "CANCELED",
    "REFUND_IN_PROCESS",
    "REFUNDED",
    "COMPLETED",
)
API_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
INVOICE_ID = r"^(OM|OD|OT)[0-9A-Za-z]{13}$"


class FullMatch(validate.Regexp):
    """A ``Regexp`` that must match the whole value.

    ``re.match`` with ``$`` accepts a value that ends in a newline ("abc\\n"), which a JSON
    Schema ``pattern`` (ECMA-262) does not: the whole value must match here, as documented.
    """

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# A list, not validate.And, so that the OpenAPI generator sees each rule.
_NAME = (
    validate.Length(min=1, max=100),
    FullMatch(r"^[\x20-\x7e]+$", error="Must be printable ASCII text."),
)


def _in_utc_range(moment: datetime) -> None:
    """A time must also exist in UTC (0001-01-01 +01:00 does not)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError("Out of the range of representable times.") from None


class Money(fields.Field[int]):
    """An amount in the smallest unit (IDR): an integer from 0 to 10^12, nothing else."""

    default_error_messages = {  # noqa: RUF012 - marshmallow's own convention
        "invalid": "Must be an integer amount, not a boolean, float or string.",
        "range": f"Must be between 0 and {MAX_AMOUNT}.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        if not 0 <= value <= MAX_AMOUNT:
            raise self.make_error("range")
        return value

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


# A refusal names at most this many unknown fields, each cut to a readable length: an answer
# must not grow with what an abusive body sends (80,000 unknown fields answered 2.2 MB).
MAX_NAMED_UNKNOWN = 20
MAX_NAME_SHOWN = 100


class StrictSchema(Schema):
    """Unknown fields are refused, by name."""

    class Meta:
        unknown = RAISE

    @pre_load
    def refuse_many_unknown_fields(self, data: Any, **kwargs: Any) -> Any:
        """A few unknown fields are named with the body's other errors; many, or a very long
        name, end the load at once with a sample of them."""
        if not isinstance(data, dict):
            return data  # marshmallow names the wrong type
        if len(data) <= MAX_NAMED_UNKNOWN and all(len(key) <= MAX_NAME_SHOWN for key in data):
            return data  # few and short: marshmallow names them with the other errors
        known = {field.data_key or name for name, field in self.load_fields.items()}
        unknown = [key for key in data if key not in known]
        if len(unknown) <= MAX_NAMED_UNKNOWN and all(len(key) <= MAX_NAME_SHOWN for key in unknown):
            return data
        errors: dict[str, list[str]] = {
            _shown(key): ["Unknown field."] for key in unknown[:MAX_NAMED_UNKNOWN]
        }
        if len(unknown) > MAX_NAMED_UNKNOWN:
            errors["_schema"] = [f"{len(unknown)} unknown fields; the first are named."]
        raise ValidationError(errors)


def _shown(name: str) -> str:
    return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "…"


def _doc(description: str) -> dict[str, Any]:
    return {"description": description}


class TransactionSchema(StrictSchema):
    """One store's part of a checkout."""

    amount = Money(required=True, metadata=_doc("The goods' price, IDR."))
    freight_charge = Money(required=True, metadata=_doc("Shipping, IDR."))
    insurance_amount = Money(load_default=0, metadata=_doc("Insurance, IDR; 0 when left out."))
    commission_onmarket = Money(
        required=True, metadata=_doc("The marketplace's commission, IDR; at most `amount`.")
    )
    seller_username = fields.String(required=True, validate=_NAME, metadata=_doc("The seller."))
    invoice_onmarket = fields.String(
        required=True,
        validate=_NAME,
        metadata=_doc(
            "The marketplace's invoice number for this store: once per checkout, and not part"
            " of another invoice that is PENDING or PAID."
        ),
    )
    waybill_number = fields.String(
        load_default=None,
        allow_none=True,
        validate=_NAME,
        metadata=_doc("The shipment's waybill number (ONDELIVERY checkouts only)."),
    )

    @validates_schema
    def commission_within_amount(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("commission_onmarket", 0) > data.get("amount", 0):
            raise ValidationError(
                "Must not exceed the transaction's amount.", "commission_onmarket"
            )

    @post_load
    def make_line(self, data: dict[str, Any], **kwargs: Any) -> TransactionLine:
        return TransactionLine(
            invoice_onmarket=data["invoice_onmarket"],
            seller_username=data["seller_username"],
            amount=data["amount"],
            freight_charge=data["freight_charge"],
            insurance_amount=data["insurance_amount"],
            commission_onmarket=data["commission_onmarket"],
            waybill_number=data["waybill_number"],
        )


class CheckoutSchema(StrictSchema):
    """A buyer's checkout: one invoice for one or more stores' transactions."""

    total_amount = Money(
        required=True,
        metadata=_doc(
            "Σ(amount + freight_charge + insurance_amount) of the transactions; more than 0."
        ),
    )
    service = fields.String(
        required=True,
        validate=validate.OneOf(SERVICES),
        metadata=_doc("The platform; also the invoice id's prefix (OM, OD, OT)."),
    )
    source = fields.String(
        required=True,
        validate=validate.OneOf(SOURCES),
        metadata=_doc(
            "XENDIT: a payment page; QRIS: a QR code; BALANCE: paid at once from the balance."
        ),
    )
    transaction = fields.List(
        fields.Nested(TransactionSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_TRANSACTIONS),
    )

    @pre_load
    def refuse_too_many_transactions(self, data: Any, **kwargs: Any) -> Any:
        """Counted before any item is loaded: 100,000 transactions must not cost seconds of
        the event loop and an answer naming each bad one."""
        lines = data.get("transaction") if isinstance(data, dict) else None
        if isinstance(lines, list) and len(lines) > MAX_TRANSACTIONS:
            raise ValidationError(
                f"Length must be between 1 and {MAX_TRANSACTIONS}; got {len(lines)}.",
                "transaction",
            )
        return data

    @validates_schema
    def consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        lines: list[TransactionLine] = data.get("transaction", [])
        if not lines:
            return
        total = sum(line.total for line in lines)
        if "total_amount" in data and data["total_amount"] != total:
            raise ValidationError(
                f"Must equal the sum of amount + freight_charge + insurance_amount ({total}).",
                "total_amount",
            )
        if data["total_amount"] == 0:
            raise ValidationError("Must be more than 0.", "total_amount")
        seen: set[str] = set()
        for index, line in enumerate(lines):
            if line.invoice_onmarket in seen:
                raise ValidationError(
                    {str(index): {"invoice_onmarket": ["Appears twice in this checkout."]}},
                    "transaction",
                )
            seen.add(line.invoice_onmarket)
        waybills = [line.waybill_number for line in lines if line.waybill_number]
        if waybills and data.get("service") != "ONDELIVERY":
            raise ValidationError("Only ONDELIVERY checkouts carry waybill numbers.", "transaction")


class PlatformActionSchema(StrictSchema):
    """The body of /invoice/done; /invoice/cancel adds buyer_username."""

    platform = fields.String(
        required=True,
        validate=validate.OneOf(SERVICES),
        metadata=_doc("Must be the calling account's own service."),
    )
    invoice_id = fields.String(required=True, validate=_NAME, metadata=_doc("Our invoice id."))
    invoice_onmarket = fields.String(
        load_default=None,
        allow_none=True,
        validate=_NAME,
        metadata=_doc("The store's transaction; may be left out when the invoice has only one."),
    )


class CancelSchema(PlatformActionSchema):
    """The body of /invoice/cancel."""

    invoice_onmarket = fields.String(
        load_default=None,
        allow_none=True,
        validate=_NAME,
        metadata=_doc("The store's transaction to refund; required when the invoice is PAID."),
    )
    buyer_username = fields.String(
        load_default=None,
        allow_none=True,
        validate=_NAME,
        metadata=_doc("The invoice's buyer; required when the invoice is PAID."),
    )


class AuthSchema(StrictSchema):
    """A login."""

    username = fields.String(required=True, validate=validate.Length(min=1, max=100))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class TopUpSchema(StrictSchema):
    """A credit to a buyer's balance."""

    username = fields.String(required=True, validate=_NAME, metadata=_doc("A buyer account."))
    amount = Money(required=True, validate=validate.Range(min=1), metadata=_doc("IDR."))


class DetailQuerySchema(StrictSchema):
    invoice = fields.String(
        validate=_NAME, metadata=_doc("The invoice id; exactly one of this and waybill_number.")
    )
    waybill_number = fields.String(
        validate=_NAME,
        metadata=_doc("The newest visible invoice with this waybill; exactly one of the two."),
    )
    as_of = fields.AwareDateTime(
        validate=_in_utc_range,
        metadata=_doc(
            "The invoice as it stood at this time (ISO 8601 with a timezone), replayed from"
            " the log; not together with as_of_position."
        ),
    )
    as_of_position = fields.Integer(
        strict=False,
        validate=validate.Range(min=0, max=MAX_POSITION),
        metadata=_doc("The invoice as it stood just after this log position."),
    )

    @validates_schema
    def exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("invoice" in data) == ("waybill_number" in data):
            raise ValidationError("Give exactly one of invoice and waybill_number.", "_schema")
        if "as_of" in data and "as_of_position" in data:
            raise ValidationError("Give at most one of as_of and as_of_position.", "_schema")


class HistoryQuerySchema(StrictSchema):
    invoice = fields.String(required=True, validate=_NAME, metadata=_doc("The invoice id."))


class BalanceQuerySchema(StrictSchema):
    limit = fields.Integer(
        load_default=100,
        validate=validate.Range(min=1, max=500),
        metadata=_doc("How many ledger entries, newest first."),
    )


# -- callbacks from the gateway ------------------------------------------------------------------


class InvoiceCallbackSchema(Schema):
    """Xendit's invoice callback; fields we do not use are let through, as Xendit adds some."""

    class Meta:
        unknown = "exclude"

    id = fields.String(required=True, validate=_NAME, metadata=_doc("The gateway's invoice id."))
    payment_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=_NAME,
        metadata=_doc("The payment's id (payments are deduplicated by it; by `id` when absent)."),
    )
    external_id = fields.String(required=True, validate=_NAME, metadata=_doc("Our invoice id."))
    status = fields.String(
        required=True,
        metadata=_doc("PAID (or SETTLED) pays, EXPIRED expires; any other is IGNORED."),
    )
    paid_amount = Money(load_default=None, allow_none=True)
    amount = Money(load_default=None, allow_none=True, metadata=_doc("Used if no paid_amount."))
    paid_at = fields.AwareDateTime(load_default=None, allow_none=True, validate=_in_utc_range)
    payment_method = fields.String(load_default="UNKNOWN", allow_none=True)
    payment_channel = fields.String(load_default="UNKNOWN", allow_none=True)


class QrPaymentDataSchema(Schema):
    class Meta:
        unknown = "exclude"

    id = fields.String(required=True, validate=_NAME, metadata=_doc("The payment's id."))
    qr_id = fields.String(required=True, validate=_NAME)
    reference_id = fields.String(required=True, validate=_NAME, metadata=_doc("Our invoice id."))
    amount = Money(required=True)
    status = fields.String(required=True, metadata=_doc("SUCCEEDED pays; any other is IGNORED."))
    created = fields.AwareDateTime(load_default=None, allow_none=True, validate=_in_utc_range)
    channel_code = fields.String(load_default="QRIS", allow_none=True)


class QrCallbackSchema(Schema):
    """Xendit's QR code payment callback."""

    class Meta:
        unknown = "exclude"

    event = fields.String(required=True, metadata=_doc("qr.payment"))
    data = fields.Nested(QrPaymentDataSchema, required=True)


# -- answers ---------------------------------------------------------------------------------------
# Answers name every field they carry (unknown keys are refused when a test validates a real
# answer), and their validators state the values a client can rely on.


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

    message = fields.String(required=True, metadata=_doc("The documented message."))
    code = fields.String(
        required=True,
        validate=FullMatch(r"^[A-Z][A-Z0-9_]*$"),
        metadata=_doc("Stable and machine-readable: match on this."),
    )
    errors = fields.Dict(metadata=_doc("Each bad field and what is wrong with it."))


class TokenAnswer(Schema):
    token = fields.String(required=True, metadata=_doc("Send as `Authorization: Bearer <token>`."))
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


class DetailAnswer(Schema):
    """An invoice as the buyer sees it (the seed's fields plus each store's transaction)."""

    id = fields.String(required=True, metadata=_doc("The invoice's sequence number."))
    username = fields.String(required=True, metadata=_doc("The buyer."))
    type = _one_of(*(f"{service} CHECKOUT" for service in SERVICES), required=True)
    amount = fields.Integer(required=True)
    xendit_invoice = fields.String(required=True, metadata=_doc("The gateway's reference."))
    invoice = fields.String(required=True, validate=validate.Regexp(INVOICE_ID))
    status = _one_of(*INVOICE_STATUSES, required=True)
    src = _one_of(*SOURCES, required=True)
    xendit_url = fields.String(required=True, allow_none=True)
    qr_string = fields.String(required=True, allow_none=True)
    expired_at = _time(required=True)
    createdAt = _time(required=True)
    updatedAt = _time(required=True)
    transaction = fields.List(fields.Nested(DetailTransactionAnswer), required=True)


class HistoryEventAnswer(Schema):
    position = fields.Integer(required=True, metadata=_doc("The event's position in the log."))
    version = fields.Integer(required=True, metadata=_doc("The event's version in its invoice."))
    type = fields.String(required=True, metadata=_doc("InvoiceCreated, InvoicePaid, …"))
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
    amount = fields.Integer(required=True, metadata=_doc("Negative for a debit."))
    type = fields.String(required=True)
    invoice = fields.String(required=True, allow_none=True)
    recorded_at = _time(required=True)


class BalanceAnswer(Schema):
    """The caller's balances and their ledger entries, newest first."""

    username = fields.String(required=True)
    balance = fields.Integer(required=True, metadata=_doc("buyer:<username>, spendable."))
    seller_balance = fields.Integer(required=True, metadata=_doc("seller:<username>."))
    entries = fields.List(fields.Nested(LedgerEntryAnswer), required=True)


class TopUpAnswer(MessageAnswer):
    message = _one_of("BALANCE TOPPED UP", required=True)
    username = fields.String(required=True)
    balance = fields.Integer(required=True, metadata=_doc("The new balance."))


class CancelAnswer(MessageAnswer):
    message = _one_of("INVOICE CANCELED", "REFUND IN PROCESS", required=True)


class DoneAnswer(MessageAnswer):
    message = _one_of("TRANSACTION IS COMPLETED", required=True)


class CallbackAnswer(MessageAnswer):
    message = _one_of(
        "PAID",
        "CREDITED",
        "DUPLICATE",
        "EXPIRED",
        "IGNORED",
        required=True,
        metadata=_doc(
            "PAID: the invoice is paid; CREDITED: a late or second payment, kept as the"
            " buyer's balance; DUPLICATE: this payment was recorded before; EXPIRED: the"
            " invoice expired; IGNORED: nothing to do."
        ),
    )


class HealthAnswer(Schema):
    status = _one_of("ok", required=True)
    head_position = fields.Integer(required=True, metadata=_doc("The log's last position."))
