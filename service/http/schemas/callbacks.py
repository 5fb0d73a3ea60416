"""The gateway's callbacks as the API reads them (marshmallow): Xendit's invoice callback and its
QR code payment callback. Unlike requests, they let unknown fields through, as Xendit adds some.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from service.http.schemas.base import NAME, Money, doc, in_utc_range


class InvoiceCallbackSchema(Schema):
    """Xendit's invoice callback; fields we do not use are let through, as Xendit adds some."""

    class Meta:
        unknown = "exclude"

    id = fields.String(required=True, validate=NAME, metadata=doc("The gateway's invoice id."))
    payment_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=NAME,
        metadata=doc("The payment's id (payments are deduplicated by it; by `id` when absent)."),
    )
    external_id = fields.String(required=True, validate=NAME, metadata=doc("Our invoice id."))
    status = fields.String(
        required=True,
        metadata=doc("PAID (or SETTLED) pays, EXPIRED expires; any other is IGNORED."),
    )
    paid_amount = Money(load_default=None, allow_none=True)
    amount = Money(load_default=None, allow_none=True, metadata=doc("Used if no paid_amount."))
    paid_at = fields.AwareDateTime(load_default=None, allow_none=True, validate=in_utc_range)
    payment_method = fields.String(load_default="UNKNOWN", allow_none=True)
    payment_channel = fields.String(load_default="UNKNOWN", allow_none=True)


class QrPaymentDataSchema(Schema):
    class Meta:
        unknown = "exclude"

    id = fields.String(required=True, validate=NAME, metadata=doc("The payment's id."))
    qr_id = fields.String(required=True, validate=NAME)
    reference_id = fields.String(required=True, validate=NAME, metadata=doc("Our invoice id."))
    amount = Money(required=True)
    status = fields.String(required=True, metadata=doc("SUCCEEDED pays; any other is IGNORED."))
    created = fields.AwareDateTime(load_default=None, allow_none=True, validate=in_utc_range)
    channel_code = fields.String(load_default="QRIS", allow_none=True)


class QrCallbackSchema(Schema):
    """Xendit's QR code payment callback."""

    class Meta:
        unknown = "exclude"

    event = fields.String(required=True, metadata=doc("qr.payment"))
    data = fields.Nested(QrPaymentDataSchema, required=True)
