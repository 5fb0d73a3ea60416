"""The webhook endpoints of the API: a platform's endpoints and its delivery log.

Basic credentials. A platform account sees and changes only its own service's endpoints and
messages (another's answer as missing ones); an admin may see and change every one, but not
create one (an endpoint belongs to a platform). The secret is made here, shown once, and
sealed before it reaches the log.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from service.application import Actor
from service.application.webhooks import (
    CreateWebhookEndpoint,
    DeleteWebhookEndpoint,
    ResendWebhookMessages,
    RotateWebhookSecret,
    UpdateWebhookEndpoint,
)
from service.domain.webhook_delivery import WebhookMessageNotFound
from service.domain.webhook_endpoint import Endpoint, WebhookEndpointNotFound
from service.http import schemas
from service.http.auth import require_role
from service.http.body import json_object
from service.http.keys import AUTH, CONFIG, READ_MODEL, SERVICE, WEBHOOK_SECRETS
from service.http.routes import answer, context, load, load_query
from service.http.schemas.webhooks import ENDPOINT_ID_PATTERN, MESSAGE_ID_PATTERN
from service.presenters import api_time
from service.views.read_model import WebhookEndpointRow, WebhookMessageRow
from service.webhooks.signing import new_secret
from service.webhooks.ssrf import check_url

routes = web.RouteTableDef()

# How many failed messages one recover resends at most (a larger backlog: call it again).
MAX_RECOVER = 10_000


async def _actor(request: web.Request) -> Actor:
    actor = await request.app[AUTH].basic(request)
    require_role(actor, "platform", "admin")
    return actor


def _scope(actor: Actor) -> str | None:
    """The service whose endpoints the actor may touch; None: an admin's, every service's."""
    return actor.platform if actor.role == "platform" else None


def _endpoint_id(request: web.Request) -> str:
    endpoint = request.match_info["endpoint"]
    if ENDPOINT_ID_PATTERN.fullmatch(endpoint) is None:
        raise WebhookEndpointNotFound()
    return endpoint


def _endpoint_body(endpoint: Endpoint | WebhookEndpointRow, **extra: Any) -> dict[str, Any]:
    return {
        "id": endpoint.endpoint,
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "disabled": endpoint.disabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": api_time(endpoint.created_at),
        **extra,
    }


def _message_body(row: WebhookMessageRow) -> dict[str, Any]:
    return {
        "id": row.message,
        "endpoint_id": row.endpoint,
        "invoice": row.invoice,
        "type": row.event_type,
        "status": row.status,
        "next_attempt_at": None if row.next_attempt_at is None else api_time(row.next_attempt_at),
        "created_at": api_time(row.queued_at),
        "attempts": [
            {
                "attempt": a.attempt,
                "at": api_time(a.at),
                "status": a.status,
                "duration_ms": a.duration_ms,
                "response": a.response,
                "error": a.error,
                "next_attempt_at": None
                if a.next_attempt_at is None
                else api_time(a.next_attempt_at),
            }
            for a in row.attempt_log
        ],
    }


@routes.post("/webhooks/endpoints")
async def create_endpoint(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].basic(request)
    require_role(actor, "platform")
    body = load(schemas.WebhookEndpointCreateSchema, await json_object(request), request)
    await check_url(body["url"], development=request.app[CONFIG].development)
    secret = new_secret()
    command = CreateWebhookEndpoint(
        "ep_" + secrets.token_hex(12),
        str(actor.platform),
        body["url"],
        tuple(dict.fromkeys(body["event_types"])),
        body["description"],
        request.app[WEBHOOK_SECRETS].seal(secret),
        actor.username,
    )
    endpoint = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer(_endpoint_body(endpoint, secret=secret), schemas.WebhookEndpointAnswer, 201)


@routes.get("/webhooks/endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    actor = await _actor(request)
    rows = await request.app[READ_MODEL].webhook_endpoints(_scope(actor))
    return answer(
        {"endpoints": [_endpoint_body(row) for row in rows]}, schemas.WebhookEndpointListAnswer
    )


@routes.get("/webhooks/endpoints/{endpoint}")
async def get_endpoint(request: web.Request) -> web.Response:
    actor = await _actor(request)
    row = await request.app[READ_MODEL].webhook_endpoint(_endpoint_id(request))
    scope = _scope(actor)
    if row is None or (scope is not None and row.service != scope):
        raise WebhookEndpointNotFound()
    return answer(_endpoint_body(row), schemas.WebhookEndpointAnswer)


@routes.patch("/webhooks/endpoints/{endpoint}")
async def update_endpoint(request: web.Request) -> web.Response:
    actor = await _actor(request)
    endpoint_id = _endpoint_id(request)
    body = load(schemas.WebhookEndpointUpdateSchema, await json_object(request), request)
    if "url" in body:
        await check_url(body["url"], development=request.app[CONFIG].development)
    types = body.get("event_types")
    command = UpdateWebhookEndpoint(
        endpoint_id,
        _scope(actor),
        body.get("url"),
        None if types is None else tuple(dict.fromkeys(types)),
        body.get("description"),
        body.get("disabled"),
        actor.username,
    )
    endpoint = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer(_endpoint_body(endpoint), schemas.WebhookEndpointAnswer)


@routes.delete("/webhooks/endpoints/{endpoint}")
async def delete_endpoint(request: web.Request) -> web.Response:
    actor = await _actor(request)
    command = DeleteWebhookEndpoint(_endpoint_id(request), _scope(actor), actor.username)
    await request.app[SERVICE].handle(command, context(request, actor.username))
    return web.Response(status=204)


@routes.post("/webhooks/endpoints/{endpoint}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    actor = await _actor(request)
    secret = new_secret()
    command = RotateWebhookSecret(
        _endpoint_id(request),
        _scope(actor),
        request.app[WEBHOOK_SECRETS].seal(secret),
        actor.username,
    )
    endpoint = await request.app[SERVICE].handle(command, context(request, actor.username))
    assert endpoint.old_until is not None
    return answer(
        {"secret": secret, "old_secret_expires_at": api_time(endpoint.old_until)},
        schemas.WebhookSecretAnswer,
    )


@routes.post("/webhooks/endpoints/{endpoint}/recover")
async def recover(request: web.Request) -> web.Response:
    actor = await _actor(request)
    endpoint_id = _endpoint_id(request)
    body = load(schemas.WebhookRecoverSchema, await json_object(request), request)
    views, scope = request.app[READ_MODEL], _scope(actor)
    row = await views.webhook_endpoint(endpoint_id)
    if row is None or (scope is not None and row.service != scope):
        raise WebhookEndpointNotFound()
    failed = await views.failed_webhook_messages(endpoint_id, body["since"])
    command = ResendWebhookMessages(tuple(failed[:MAX_RECOVER]), scope, actor.username)
    count = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer({"resent": count}, schemas.WebhookResentAnswer, 202)


@routes.get("/webhooks/messages")
async def list_messages(request: web.Request) -> web.Response:
    actor = await _actor(request)
    query = load_query(schemas.WebhookMessagesQuerySchema, request)
    rows = await request.app[READ_MODEL].webhook_messages(
        _scope(actor),
        endpoint=query.get("endpoint_id"),
        status=query.get("status"),
        invoice=query.get("invoice"),
        limit=query["limit"],
    )
    return answer(
        {"messages": [_message_body(row) for row in rows]}, schemas.WebhookMessageListAnswer
    )


@routes.post("/webhooks/messages/{message}/resend")
async def resend(request: web.Request) -> web.Response:
    actor = await _actor(request)
    message = request.match_info["message"]
    if MESSAGE_ID_PATTERN.fullmatch(message) is None:
        raise WebhookMessageNotFound()
    command = ResendWebhookMessages((message,), _scope(actor), actor.username)
    count = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer({"resent": count}, schemas.WebhookResentAnswer, 202)
