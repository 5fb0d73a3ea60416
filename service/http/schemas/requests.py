"""What the API reads (marshmallow): request bodies and queries (the gateway's callbacks are in
``callbacks``), and the field types they share.

Requests refuse unknown fields, and money is a strict integer: booleans, floats, numeric strings
and negatives are refused, and no amount may exceed 10^12. The OpenAPI document
(``service/http/openapi/``) is generated from these classes, so each constraint is written
once, as a validator that both refuses bad input and documents the rule; ``metadata``
descriptions become the document's.
"""

from __future__ import annotations

import re
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
from service.domain.services import SERVICES, SOURCES

MAX_AMOUNT = 10**12
MAX_TRANSACTIONS = 100
MAX_POSITION = 2**63 - 1  # SQLite's largest integer: the log's positions cannot go beyond


class FullMatch(validate.Regexp):
    """A ``Regexp`` that must match the whole value.

    ``re.match`` with ``$`` accepts a value that ends in a newline ("abc\\n"), which a JSON
    Schema ``pattern`` (ECMA-262) does not: the whole value must match here, as documented.
    """

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# Here, not in ``webhooks``, since the operator page's query names one too.
WEBHOOK_MESSAGE_ID = FullMatch(r"^msg_[0-9a-f]{32}$", error="Not a webhook message id.")


# A list, not validate.And, so that the OpenAPI generator sees each rule.
NAME = (
    validate.Length(min=1, max=100),
    FullMatch(r"^[\x20-\x7e]+$", error="Must be printable ASCII text."),
)


def in_utc_range(moment: datetime) -> None:
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


class QueryInteger(fields.Integer):
    """An integer written in a query string: ASCII digits, with a ``-`` for a negative number.

    ``int()`` (and so ``fields.Integer``) also reads "٣", "１", "+5", " 5" and "5_0"; a proxy,
    a cache or a log reader may read those differently or not at all, so they are refused.
    """

    default_error_messages = {  # noqa: RUF012 - marshmallow's own convention
        "invalid": "Not a valid integer: ASCII digits 0-9 only.",
    }

    _DIGITS = re.compile(r"-?[0-9]+")

    def _validated(self, value: Any) -> int:
        if not isinstance(value, str) or self._DIGITS.fullmatch(value) is None:
            raise self.make_error("invalid")
        return super()._validated(value)


def refuse_long_list(data: Any, name: str, most: int) -> Any:
    """``data`` as it is, unless its list ``name`` holds more than ``most`` items: refused by
    its length before any item is loaded (the same message the field's own length check
    gives)."""
    items = data.get(name) if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > most:
        raise ValidationError(f"Length must be between 1 and {most}; got {len(items)}.", name)
    return data


def doc(description: str) -> dict[str, Any]:
    return {"description": description}


class TransactionSchema(StrictSchema):
    """One store's part of a checkout."""

    amount = Money(required=True, metadata=doc("The goods' price, IDR."))
    freight_charge = Money(required=True, metadata=doc("Shipping, IDR."))
    insurance_amount = Money(load_default=0, metadata=doc("Insurance, IDR; 0 when left out."))
    commission_onmarket = Money(
        required=True, metadata=doc("The marketplace's commission, IDR; at most `amount`.")
    )
    seller_username = fields.String(required=True, validate=NAME, metadata=doc("The seller."))
    invoice_onmarket = fields.String(
        required=True,
        validate=NAME,
        metadata=doc(
            "The marketplace's invoice number for this store: once per checkout, and not part"
            " of another invoice that is PENDING or PAID."
        ),
    )
    waybill_number = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata=doc("The shipment's waybill number (ONDELIVERY checkouts only)."),
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
        metadata=doc(
            "Σ(amount + freight_charge + insurance_amount) of the transactions; more than 0."
        ),
    )
    service = fields.String(
        required=True,
        validate=validate.OneOf(SERVICES),
        metadata=doc("The platform; also the invoice id's prefix (OM, OD, OT)."),
    )
    source = fields.String(
        required=True,
        validate=validate.OneOf(SOURCES),
        metadata=doc(
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
        return refuse_long_list(data, "transaction", MAX_TRANSACTIONS)

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
        metadata=doc("Must be the calling account's own service."),
    )
    invoice_id = fields.String(required=True, validate=NAME, metadata=doc("Our invoice id."))
    invoice_onmarket = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata=doc("The store's transaction; may be left out when the invoice has only one."),
    )


MAX_BATCH_ITEMS = 100


class BatchItemSchema(StrictSchema):
    """One transaction of /invoice/done/batch."""

    invoice_id = fields.String(required=True, validate=NAME, metadata=doc("Our invoice id."))
    invoice_onmarket = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata=doc("The store's transaction; may be left out when the invoice has only one."),
    )
    amount = Money(
        load_default=None,
        allow_none=True,
        metadata=doc(
            "If given, must equal the transaction's amount + freight_charge + insurance_amount"
            " (else this item fails with AMOUNT_MISMATCH)."
        ),
    )


class DoneBatchSchema(StrictSchema):
    """The body of /invoice/done/batch: 1 to 100 transactions to complete, each on its own."""

    platform = fields.String(
        required=True,
        validate=validate.OneOf(SERVICES),
        metadata=doc("Must be the calling account's own service."),
    )
    items = fields.List(
        fields.Nested(BatchItemSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH_ITEMS),
    )

    @pre_load
    def refuse_too_many_items(self, data: Any, **kwargs: Any) -> Any:
        """Counted before any item is loaded, as a checkout's transactions are."""
        return refuse_long_list(data, "items", MAX_BATCH_ITEMS)


class CancelSchema(PlatformActionSchema):
    """The body of /invoice/cancel."""

    invoice_onmarket = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata=doc("The store's transaction to refund; required when the invoice is PAID."),
    )
    buyer_username = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata=doc("The invoice's buyer; required when the invoice is PAID."),
    )


class AuthSchema(StrictSchema):
    """A login."""

    username = fields.String(required=True, validate=validate.Length(min=1, max=100))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class TopUpSchema(StrictSchema):
    """A credit to a buyer's balance."""

    username = fields.String(required=True, validate=NAME, metadata=doc("A buyer account."))
    amount = Money(required=True, validate=validate.Range(min=1), metadata=doc("IDR."))


class DetailQuerySchema(StrictSchema):
    invoice = fields.String(
        validate=NAME, metadata=doc("The invoice id; exactly one of this and waybill_number.")
    )
    waybill_number = fields.String(
        validate=NAME,
        metadata=doc("The newest visible invoice with this waybill; exactly one of the two."),
    )
    as_of = fields.AwareDateTime(
        validate=in_utc_range,
        metadata=doc(
            "The invoice as it stood at this time (ISO 8601 with a timezone), replayed from"
            " the log; not together with as_of_position."
        ),
    )
    as_of_position = QueryInteger(
        validate=validate.Range(min=0, max=MAX_POSITION),
        metadata=doc("The invoice as it stood just after this log position."),
    )

    @validates_schema
    def exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("invoice" in data) == ("waybill_number" in data):
            raise ValidationError("Give exactly one of invoice and waybill_number.", "_schema")
        if "as_of" in data and "as_of_position" in data:
            raise ValidationError("Give at most one of as_of and as_of_position.", "_schema")


class AdminQuerySchema(StrictSchema):
    q = fields.String(
        validate=NAME, metadata=doc("An invoice id or a waybill number to show the timeline of.")
    )
    as_of = fields.AwareDateTime(
        validate=in_utc_range,
        metadata=doc("Show the invoice as it stood at this time (ISO 8601 with a timezone)."),
    )
    as_of_position = QueryInteger(
        validate=validate.Range(min=0, max=MAX_POSITION),
        metadata=doc("Show the invoice as it stood just after this log position."),
    )
    resent = fields.String(
        validate=WEBHOOK_MESSAGE_ID,
        metadata=doc("A webhook delivery just resent from the page (its notice says so)."),
    )

    @validates_schema
    def one_moment(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "as_of" in data and "as_of_position" in data:
            raise ValidationError("Give at most one of as_of and as_of_position.", "_schema")


class HistoryQuerySchema(StrictSchema):
    invoice = fields.String(required=True, validate=NAME, metadata=doc("The invoice id."))


class BalanceQuerySchema(StrictSchema):
    limit = QueryInteger(
        load_default=100,
        validate=validate.Range(min=1, max=500),
        metadata=doc("How many ledger entries, newest first."),
    )
