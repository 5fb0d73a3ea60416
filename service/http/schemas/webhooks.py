"""The bodies, queries and answers of the webhook endpoints (marshmallow)."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.domain.webhook_delivery import MESSAGE_STATUSES, WEBHOOK_EVENT_TYPES
from service.http.schemas.answers import API_TIME
from service.http.schemas.base import (
    NAME,
    FullMatch,
    QueryInteger,
    StrictSchema,
    doc,
)

MAX_URL = 2048
MAX_DESCRIPTION = 500
ENDPOINT_ID_PATTERN = re.compile(r"ep_[0-9a-f]{24}")
MESSAGE_ID_PATTERN = re.compile(r"msg_[0-9a-f]{32}")
WEBHOOK_ENDPOINT_ID = FullMatch(r"^ep_[0-9a-f]{24}$", error="Not a webhook endpoint id.")


class StrictBoolean(fields.Boolean):
    """JSON true or false only: 1, "true" and "yes" are refused, as numbers refuse strings."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def _url(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=validate.Length(min=1, max=MAX_URL),
        metadata=doc(
            "Where deliveries are POSTed. In production: https, and a host that resolves to"
            " public addresses only; development mode also allows http and local addresses."
        ),
        **kwargs,
    )


def _event_types(**kwargs: Any) -> fields.List[Any]:
    return fields.List(
        fields.String(validate=validate.OneOf(WEBHOOK_EVENT_TYPES)),
        validate=validate.Length(max=len(WEBHOOK_EVENT_TYPES)),
        metadata=doc("The event types sent to this endpoint; empty or left out: all of them."),
        **kwargs,
    )


def _description(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(max=MAX_DESCRIPTION), **kwargs)


class WebhookEndpointCreateSchema(StrictSchema):
    """A new endpoint of the caller's service."""

    url = _url(required=True)
    event_types = _event_types(load_default=list)
    description = _description(load_default="")


class WebhookEndpointUpdateSchema(StrictSchema):
    """The fields to change; at least one."""

    url = _url()
    event_types = _event_types()
    description = _description()
    disabled = StrictBoolean(metadata=doc("Disable (true) or enable (false)."))

    @validates_schema
    def something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.", "_schema")


class WebhookRecoverSchema(StrictSchema):
    since = fields.AwareDateTime(
        required=True, metadata=doc("Resend every failed message queued at or after this time.")
    )


class WebhookMessagesQuerySchema(StrictSchema):
    endpoint_id = fields.String(validate=WEBHOOK_ENDPOINT_ID)
    status = fields.String(validate=validate.OneOf(MESSAGE_STATUSES))
    invoice = fields.String(validate=NAME)
    limit = QueryInteger(
        load_default=100, validate=validate.Range(min=1, max=500), metadata=doc("Newest first.")
    )


def _time(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Regexp(API_TIME), **kwargs)


class WebhookEndpointAnswer(Schema):
    id = fields.String(required=True)
    url = fields.String(required=True)
    event_types = fields.List(fields.String(), required=True)
    description = fields.String(required=True)
    disabled = fields.Boolean(required=True)
    disabled_reason = fields.String(metadata=doc("Why the service disabled it (410, failures)."))
    created_at = _time(required=True)
    secret = fields.String(
        metadata=doc("`whsec_…`: shown only when the endpoint is created or its secret rotated.")
    )


class WebhookEndpointListAnswer(Schema):
    endpoints = fields.List(fields.Nested(WebhookEndpointAnswer), required=True)


class WebhookSecretAnswer(Schema):
    secret = fields.String(required=True, metadata=doc("The new `whsec_…` secret."))
    old_secret_expires_at = _time(
        required=True, metadata=doc("Until then the previous secret signs beside it.")
    )


class WebhookAttemptAnswer(Schema):
    attempt = fields.Integer(required=True)
    at = _time(required=True)
    status = fields.Integer(required=True, metadata=doc("The HTTP status; 0 if none came."))
    duration_ms = fields.Integer(required=True)
    response = fields.String(required=True, metadata=doc("The first 1 KiB of the answer."))
    error = fields.String(required=True, metadata=doc("Why no answer came (timeout…)."))
    next_attempt_at = _time(allow_none=True, required=True)


class WebhookMessageAnswer(Schema):
    id = fields.String(required=True, metadata=doc("The `webhook-id` of every attempt."))
    endpoint_id = fields.String(required=True)
    invoice = fields.String(required=True)
    type = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(MESSAGE_STATUSES))
    attempts = fields.List(fields.Nested(WebhookAttemptAnswer), required=True)
    next_attempt_at = _time(allow_none=True, required=True)
    created_at = _time(required=True)


class WebhookMessageListAnswer(Schema):
    messages = fields.List(fields.Nested(WebhookMessageAnswer), required=True)


class WebhookResentAnswer(Schema):
    resent = fields.Integer(required=True, metadata=doc("How many messages are sent again."))
