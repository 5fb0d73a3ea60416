"""What the API reads in request bodies (marshmallow): checkout, done (one or a batch), cancel,
login and top-up. The field types they share are in ``base``, the queries in ``queries``, the
gateway's callbacks in ``callbacks``, the webhook endpoints' bodies in ``webhooks``.

The OpenAPI document (``service/http/openapi/``) is generated from these classes, so each
constraint is written once, as a validator that both refuses bad input and documents the rule;
``metadata`` descriptions become the document's.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, pre_load, validate, validates_schema

from service.domain.events import TransactionLine
from service.domain.services import SERVICES, SOURCES
from service.http.schemas.base import (
    NAME,
    Money,
    StrictSchema,
    doc,
    refuse_long_list,
)

MAX_TRANSACTIONS = 100


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
