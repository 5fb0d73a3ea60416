"""The body of ``POST /invoice/mark-paid`` (marshmallow): which invoice, and the out-of-band
payment's reference and the reason, kept in the invoice's history as given."""

from __future__ import annotations

from marshmallow import fields, validate

from service.domain.services import SERVICES
from service.http.schemas.base import NAME, StrictSchema, doc

MAX_REFERENCE = 255
MAX_REASON = 500


class MarkPaidSchema(StrictSchema):
    """A PENDING invoice paid out of band, to be marked PAID (channel MANUAL)."""

    platform = fields.String(
        required=True,
        validate=validate.OneOf(SERVICES),
        metadata=doc("The invoice's service; a platform account's own service."),
    )
    invoice_id = fields.String(required=True, validate=NAME, metadata=doc("Our invoice id."))
    reference = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_REFERENCE),
        metadata=doc("The out-of-band payment's reference (a bank transfer's, say)."),
    )
    reason = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_REASON),
        metadata=doc("Why the invoice is marked paid, for its history."),
    )
