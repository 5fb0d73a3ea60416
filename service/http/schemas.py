"""Request and answer schemas (marshmallow): every body the API reads or writes.

Requests refuse unknown fields, and money is a strict integer: booleans, floats, numeric strings
and negatives are refused, and no amount may exceed 10^12. Answer schemas document what each
endpoint returns and are checked against real answers by the tests.
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
    validate,
    validates_schema,
)

from service.domain.events import TransactionLine

MAX_AMOUNT = 10**12
SERVICES = ("ONMARKET", "ONDELIVERY", "ONTICKET")
SOURCES = ("XENDIT", "BALANCE", "QRIS")
MAX_TRANSACTIONS = 100

_NAME = validate.And(
    validate.Length(min=1, max=100),
    validate.Regexp(r"^[\x20-\x7e]+$", error="Must be printable ASCII text."),
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


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class TransactionSchema(StrictSchema):
    amount = Money(required=True)
    freight_charge = Money(required=True)
    insurance_amount = Money(load_default=0)
    commission_onmarket = Money(required=True)
    seller_username = fields.String(required=True, validate=_NAME)
    invoice_onmarket = fields.String(required=True, validate=_NAME)
    waybill_number = fields.String(load_default=None, allow_none=True, validate=_NAME)

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
    total_amount = Money(required=True)
    service = fields.String(required=True, validate=validate.OneOf(SERVICES))
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))
    transaction = fields.List(
        fields.Nested(TransactionSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_TRANSACTIONS),
    )

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

    platform = fields.String(required=True, validate=validate.OneOf(SERVICES))
    invoice_id = fields.String(required=True, validate=_NAME)
    invoice_onmarket = fields.String(load_default=None, allow_none=True, validate=_NAME)


class CancelSchema(PlatformActionSchema):
    buyer_username = fields.String(load_default=None, allow_none=True, validate=_NAME)


class AuthSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=100))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class TopUpSchema(StrictSchema):
    username = fields.String(required=True, validate=_NAME)
    amount = Money(required=True, validate=validate.Range(min=1))


class DetailQuerySchema(StrictSchema):
    invoice = fields.String(validate=_NAME)
    waybill_number = fields.String(validate=_NAME)
    as_of = fields.AwareDateTime(validate=_in_utc_range)
    as_of_position = fields.Integer(strict=False, validate=validate.Range(min=0))

    @validates_schema
    def exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("invoice" in data) == ("waybill_number" in data):
            raise ValidationError("Give exactly one of invoice and waybill_number.", "_schema")
        if "as_of" in data and "as_of_position" in data:
            raise ValidationError("Give at most one of as_of and as_of_position.", "_schema")


class HistoryQuerySchema(StrictSchema):
    invoice = fields.String(required=True, validate=_NAME)


class BalanceQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


# -- callbacks from the gateway ------------------------------------------------------------------


class InvoiceCallbackSchema(Schema):
    """Xendit's invoice callback; fields we do not use are let through, as Xendit adds some."""

    class Meta:
        unknown = "exclude"

    id = fields.String(required=True, validate=_NAME)
    payment_id = fields.String(load_default=None, allow_none=True, validate=_NAME)
    external_id = fields.String(required=True, validate=_NAME)
    status = fields.String(required=True)
    paid_amount = Money(load_default=None, allow_none=True)
    amount = Money(load_default=None, allow_none=True)
    paid_at = fields.AwareDateTime(load_default=None, allow_none=True, validate=_in_utc_range)
    payment_method = fields.String(load_default="UNKNOWN", allow_none=True)
    payment_channel = fields.String(load_default="UNKNOWN", allow_none=True)


class QrPaymentDataSchema(Schema):
    class Meta:
        unknown = "exclude"

    id = fields.String(required=True, validate=_NAME)
    qr_id = fields.String(required=True, validate=_NAME)
    reference_id = fields.String(required=True, validate=_NAME)
    amount = Money(required=True)
    status = fields.String(required=True)
    created = fields.AwareDateTime(load_default=None, allow_none=True, validate=_in_utc_range)
    channel_code = fields.String(load_default="QRIS", allow_none=True)


class QrCallbackSchema(Schema):
    class Meta:
        unknown = "exclude"

    event = fields.String(required=True)
    data = fields.Nested(QrPaymentDataSchema, required=True)


# -- answers ---------------------------------------------------------------------------------------


class MessageAnswer(Schema):
    message = fields.String(required=True)


class ErrorAnswer(MessageAnswer):
    code = fields.String(required=True)
    errors = fields.Dict()


class TokenAnswer(Schema):
    token = fields.String(required=True)
    expired_at = fields.String(required=True)


class TransactionStatusAnswer(Schema):
    invoice_onmarket = fields.String(required=True)
    status = fields.String(required=True)


class CheckoutAnswer(Schema):
    payment_url = fields.String()
    invoice = fields.String(required=True)
    xendit_invoice = fields.String(required=True)
    qr_string = fields.String()
    amount = fields.Integer()
    status = fields.String()
    expired_at = fields.String(required=True)
    transaction = fields.List(fields.Nested(TransactionStatusAnswer))


class DetailTransactionAnswer(Schema):
    invoice_onmarket = fields.String(required=True)
    seller_username = fields.String(required=True)
    amount = fields.Integer(required=True)
    freight_charge = fields.Integer(required=True)
    insurance_amount = fields.Integer(required=True)
    commission_onmarket = fields.Integer(required=True)
    waybill_number = fields.String(allow_none=True)
    status = fields.String(required=True)


class DetailAnswer(Schema):
    id = fields.String(required=True)
    username = fields.String(required=True)
    type = fields.String(required=True)
    amount = fields.Integer(required=True)
    xendit_invoice = fields.String(required=True)
    invoice = fields.String(required=True)
    status = fields.String(required=True)
    src = fields.String(required=True)
    xendit_url = fields.String(allow_none=True)
    qr_string = fields.String(allow_none=True)
    expired_at = fields.String(required=True)
    createdAt = fields.String(required=True)
    updatedAt = fields.String(required=True)
    transaction = fields.List(fields.Nested(DetailTransactionAnswer), required=True)


class HistoryEventAnswer(Schema):
    position = fields.Integer(required=True)
    version = fields.Integer(required=True)
    type = fields.String(required=True)
    data = fields.Dict(required=True)
    recorded_at = fields.String(required=True)
    actor = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)


class HistoryAnswer(Schema):
    invoice = fields.String(required=True)
    events = fields.List(fields.Nested(HistoryEventAnswer), required=True)


class LedgerEntryAnswer(Schema):
    position = fields.Integer(required=True)
    account = fields.String(required=True)
    amount = fields.Integer(required=True)
    type = fields.String(required=True)
    invoice = fields.String(allow_none=True)
    recorded_at = fields.String(required=True)


class BalanceAnswer(Schema):
    username = fields.String(required=True)
    balance = fields.Integer(required=True)
    seller_balance = fields.Integer(required=True)
    entries = fields.List(fields.Nested(LedgerEntryAnswer), required=True)


class TopUpAnswer(MessageAnswer):
    username = fields.String(required=True)
    balance = fields.Integer(required=True)
