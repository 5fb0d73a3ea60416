"""The queries of the read endpoints (marshmallow): invoice detail and history, balance, and
the operator page's search.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from service.http.schemas.base import (
    NAME,
    WEBHOOK_MESSAGE_ID,
    QueryInteger,
    StrictSchema,
    doc,
    in_utc_range,
)

MAX_POSITION = 2**63 - 1  # SQLite's largest integer: the log's positions cannot go beyond


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
