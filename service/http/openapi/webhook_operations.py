"""What the OpenAPI document says about the webhook routes (``/webhooks/...``).

Kept apart from ``operations.py``, which assembles the whole table from these and its own.
"""

from __future__ import annotations

from service.http import schemas
from service.http.openapi.common import (
    ALWAYS,
    BASIC,
    BODY_ERRORS,
    ROLE,
    Operation,
    error_table,
)

_ENDPOINT = {404: ("WEBHOOK_ENDPOINT_NOT_FOUND",)}
_WEBHOOK_DOC = (
    " Basic credentials of a platform account (its own service's endpoints and messages only:"
    " another's answer as missing ones) or an admin (every service's)."
)

WEBHOOK_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("post", "/webhooks/endpoints"): Operation(
        tag="webhooks",
        summary="Register a webhook endpoint for the caller's service",
        description=(
            "Platform accounts only. Deliveries of the selected `event_types` (all when empty)"
            " are POSTed to `url`, signed per Standard Webhooks with `secret`, which is shown"
            " only here (and on rotation). In production the URL must be https and resolve to"
            " public addresses only (`WEBHOOK_URL_REFUSED`)."
        ),
        security=BASIC,
        body=schemas.WebhookEndpointCreateSchema,
        answer=schemas.WebhookEndpointAnswer,
        status=201,
        answer_description="Created: the endpoint, with its secret",
        errors=error_table(BODY_ERRORS, {400: ("WEBHOOK_URL_REFUSED",)}, ROLE, ALWAYS),
    ),
    ("get", "/webhooks/endpoints"): Operation(
        tag="webhooks",
        summary="The caller's webhook endpoints",
        description="Oldest first, without their secrets." + _WEBHOOK_DOC,
        security=BASIC,
        answer=schemas.WebhookEndpointListAnswer,
        errors=error_table(ROLE, ALWAYS),
    ),
    ("get", "/webhooks/endpoints/{endpoint}"): Operation(
        tag="webhooks",
        summary="A webhook endpoint",
        description="Without its secret." + _WEBHOOK_DOC,
        security=BASIC,
        answer=schemas.WebhookEndpointAnswer,
        errors=error_table(ROLE, _ENDPOINT, ALWAYS),
    ),
    ("patch", "/webhooks/endpoints/{endpoint}"): Operation(
        tag="webhooks",
        summary="Change a webhook endpoint: url, event types, description, disabled",
        description=(
            "Only the fields given change. `disabled: false` enables an endpoint the service"
            " disabled (410, or failing for days); its pending messages are then sent, and"
            " failed ones can be recovered." + _WEBHOOK_DOC
        ),
        security=BASIC,
        body=schemas.WebhookEndpointUpdateSchema,
        answer=schemas.WebhookEndpointAnswer,
        errors=error_table(
            BODY_ERRORS,
            {400: ("WEBHOOK_URL_REFUSED",)},
            ROLE,
            _ENDPOINT,
            {409: ("CONFLICT",)},
            ALWAYS,
        ),
    ),
    ("delete", "/webhooks/endpoints/{endpoint}"): Operation(
        tag="webhooks",
        summary="Delete a webhook endpoint",
        description="Nothing more is sent to it; its delivery log stays." + _WEBHOOK_DOC,
        security=BASIC,
        answer={"type": "null"},
        status=204,
        answer_description="Deleted",
        errors=error_table(ROLE, _ENDPOINT, {409: ("CONFLICT",)}, ALWAYS),
    ),
    ("post", "/webhooks/endpoints/{endpoint}/rotate-secret"): Operation(
        tag="webhooks",
        summary="Rotate a webhook endpoint's secret",
        description=(
            "A new secret signs from now on; the previous one signs beside it (a second"
            " `v1,` signature in `webhook-signature`) until `old_secret_expires_at`, 24 h"
            " later, so receivers can switch without missing a delivery." + _WEBHOOK_DOC
        ),
        security=BASIC,
        answer=schemas.WebhookSecretAnswer,
        errors=error_table(ROLE, _ENDPOINT, {409: ("CONFLICT",)}, ALWAYS),
    ),
    ("post", "/webhooks/endpoints/{endpoint}/recover"): Operation(
        tag="webhooks",
        summary="Resend every failed message of an endpoint since a time",
        description=(
            "Each failed message queued at or after `since` is due again at once, with a new"
            " round of retries and the same `webhook-id`." + _WEBHOOK_DOC
        ),
        security=BASIC,
        body=schemas.WebhookRecoverSchema,
        answer=schemas.WebhookResentAnswer,
        status=202,
        answer_description="Accepted: the messages are due again",
        errors=error_table(BODY_ERRORS, ROLE, _ENDPOINT, {409: ("CONFLICT",)}, ALWAYS),
    ),
    ("get", "/webhooks/messages"): Operation(
        tag="webhooks",
        summary="The delivery log: messages and their attempts",
        description=(
            "Newest first, filtered by `endpoint_id`, `status` (pending, delivered, failed)"
            " and `invoice`. Each attempt shows its time, the HTTP status (0: no answer, with"
            " `error`), its duration and the first 1 KiB of the answer." + _WEBHOOK_DOC
        ),
        security=BASIC,
        query=schemas.WebhookMessagesQuerySchema,
        answer=schemas.WebhookMessageListAnswer,
        errors=error_table({400: ("VALIDATION",)}, ROLE, ALWAYS),
    ),
    ("post", "/webhooks/messages/{message}/resend"): Operation(
        tag="webhooks",
        summary="Send a message again, delivered or not",
        description="Due at once, with the same `webhook-id`." + _WEBHOOK_DOC,
        security=BASIC,
        answer=schemas.WebhookResentAnswer,
        status=202,
        answer_description="Accepted: the message is due again",
        errors=error_table(
            ROLE, {404: ("WEBHOOK_MESSAGE_NOT_FOUND",)}, {409: ("CONFLICT",)}, ALWAYS
        ),
    ),
}
