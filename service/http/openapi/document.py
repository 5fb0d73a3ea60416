"""The OpenAPI 3.1 document of an app's mounted routes, built with apispec.

What each endpoint takes comes from the request schemas in ``schemas`` (their validators are the
constraints, so a rule is written once); what it answers comes from the answer schemas that its
handler passes to ``answer()``; the rest from ``operations.OPERATIONS``. Each error status names
its codes in an ``enum``, so a test that validates a real answer against the document catches an
undocumented code too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from service.http import schemas
from service.http.middleware import REQUEST_ID_HEADER
from service.http.openapi.codes import ERROR_MESSAGES
from service.http.openapi.common import (
    BASIC,
    BEARER,
    CALLBACK_TOKEN,
    IDEMPOTENCY_KEY,
    Operation,
)
from service.http.openapi.operations import DESCRIPTION, OPERATIONS, STATUS_TEXT, TAGS
from service.http.openapi.webhook_deliveries import webhooks

OPENAPI_VERSION = "3.1.0"
TITLE = "Invoice service API"
SANDBOX_PREFIX = "/sandbox/"


def _version() -> str:
    try:
        return metadata.version("invoice-service")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"


# -- building the document --------------------------------------------------------------------


def _money_range(
    self: Any, field: fields.Field[Any], ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """Money is an integer from 0 to 10^12; a Range validator may narrow that further."""
    if not isinstance(field, schemas.Money):
        return {}
    return {
        "minimum": max(ret.get("minimum", 0), 0),
        "maximum": min(ret.get("maximum", schemas.MAX_AMOUNT), schemas.MAX_AMOUNT),
    }


def routes_to_document(app: web.Application) -> list[tuple[str, str]]:
    """The app's (method, path) pairs this document must describe: all but HEAD and sandbox."""
    found = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "*")
        and not route.resource.canonical.startswith(SANDBOX_PREFIX)
    }
    return sorted(found)


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of the routes ``app`` has mounted."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=TITLE,
        version=_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        tags=[{"name": name, "description": text} for name, text in TAGS],
    )
    converter = plugin.converter
    assert converter is not None
    # An instance attribute: apispec's own mapping is shared by every converter.
    converter.field_mapping = {**converter.field_mapping, schemas.Money: ("integer", None)}
    converter.add_attribute_function(_money_range)  # type: ignore[no-untyped-call]

    components = spec.components
    components.security_scheme(
        BEARER,
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "HMAC-signed token",
            "description": "A token from `POST /auth`.",
        },
    )
    components.security_scheme(
        BASIC,
        {
            "type": "http",
            "scheme": "basic",
            "description": "An account's username and password (platform or admin accounts).",
        },
    )
    components.security_scheme(
        CALLBACK_TOKEN,
        {
            "type": "apiKey",
            "in": "header",
            "name": "x-callback-token",
            "description": "The gateway's callback verification token (`callback_token`).",
        },
    )
    components.header(
        REQUEST_ID_HEADER,
        {
            "description": "The request's id: the one it sent if sensible, else a new one.",
            "required": True,
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
        },
    )
    components.parameter(
        REQUEST_ID_HEADER,
        "header",
        {
            "name": REQUEST_ID_HEADER,
            "required": False,
            "description": (
                "Your id for this request: echoed, logged and recorded with its events when it"
                " is 1 to 128 characters `[A-Za-z0-9._:-]`; anything else is replaced."
            ),
            "schema": {"type": "string"},
        },
    )
    components.parameter(
        IDEMPOTENCY_KEY,
        "header",
        {
            "name": IDEMPOTENCY_KEY,
            "required": False,
            "description": (
                "Makes a retry safe: the same key and body within 24 h answer the first answer"
                " again; the same key with another body is 409."
            ),
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": r"^[\x21-\x7e]{1,255}$",
            },
        },
    )
    components.schema("ErrorAnswer", schema=schemas.ErrorAnswer)

    mounted = set(routes_to_document(app))
    for (method, path), operation in OPERATIONS.items():
        if (method, path) in mounted:
            spec.path(path=path, operations={method: _operation(method, path, operation)})
    document = spec.to_dict()
    document["webhooks"] = webhooks()  # what the service sends, beside what it answers
    _describe_schemas(document)
    return document


def _operation(method: str, path: str, operation: Operation) -> dict[str, Any]:
    parameters: list[Any] = []
    if operation.query is not None:
        parameters.append({"in": "query", "schema": operation.query})
    parameters.extend(operation.headers)  # names of components.parameters
    parameters.append(REQUEST_ID_HEADER)
    for name in re.findall(r"{([a-z_]+)}", path):
        parameters.append(
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
        )
    success: dict[str, Any] = {
        "description": operation.answer_description,
        "headers": {REQUEST_ID_HEADER: _ref("headers", REQUEST_ID_HEADER)},
    }
    if operation.status != 204:  # a 204 has no body
        success["content"] = {operation.answer_media_type: {"schema": operation.answer}}
    responses: dict[str, Any] = {str(operation.status): success}
    for status, codes in operation.errors.items():
        responses[str(status)] = _error_response(status, codes)
    result: dict[str, Any] = {
        "tags": [operation.tag],
        "summary": operation.summary,
        "description": operation.description,
        "operationId": _operation_id(method, path),
        "parameters": parameters,
        "responses": responses,
        "security": [{operation.security: []}] if operation.security else [],
    }
    if operation.body is not None:
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": operation.body}},
        }
    return result


def _error_response(status: int, codes: Iterable[str]) -> dict[str, Any]:
    codes = list(codes)
    lines = "\n".join(f"- `{code}`: {ERROR_MESSAGES[code]}" for code in codes)
    return {
        "description": f"{STATUS_TEXT.get(status, 'Error')}.\n\n{lines}",
        "headers": {REQUEST_ID_HEADER: _ref("headers", REQUEST_ID_HEADER)},
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [_ref("schemas", "ErrorAnswer")],
                    "properties": {"code": {"enum": codes}},
                }
            }
        },
    }


def _ref(section: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{section}/{name}"}


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    return method + "".join(word[:1].upper() + word[1:] for word in words)


def _describe_schemas(document: dict[str, Any]) -> None:
    """Give each component schema its class's docstring (apispec reads only Meta)."""
    by_name = {
        name: schema
        for name, schema in vars(schemas).items()
        if isinstance(schema, type) and issubclass(schema, Schema)
    }
    for name, component in document.get("components", {}).get("schemas", {}).items():
        cls = by_name.get(name) or by_name.get(f"{name}Schema")
        doc = (cls.__doc__ or "").strip() if cls is not None else ""
        if doc:
            component.setdefault("description", " ".join(doc.split()))
