"""Middleware: request ids and the canonical log line, and the one place errors become answers.

Every answer carries ``X-Request-ID`` (the client's, if it sent a sensible one). Every error is a
JSON body with the documented ``message`` and a stable ``code``; validation errors add an
``errors`` object naming each bad field. An unexpected exception is logged with its traceback and
answers ``500 {"message": "INTERNAL SERVER ERROR", "code": "INTERNAL"}``: no trace reaches a
client.
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import ValidationError

from service.domain.errors import DomainError
from service.gateway.port import GatewayError
from service.http.errors import status_of
from service.http.keys import CONFIG, METRICS, REQUEST_ID, REQUEST_IDS, USERNAME
from service.http.responses import ApiError, error_body, json_response

# ApiError and json_response were defined here once; they are re-exported for old imports.
__all__ = [
    "REQUEST_ID_HEADER",
    "ApiError",
    "error_body",
    "errors_as_json",
    "json_response",
    "request_context",
]

log = structlog.get_logger("service.http")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Methods a request histogram names; any other is "OTHER", so a client cannot make new series.
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
UNMATCHED = "unmatched"

_HTTP_CODES = {
    404: ("Not found", "NOT_FOUND"),
    405: ("Method not allowed", "METHOD_NOT_ALLOWED"),
    413: ("Request body is too large", "PAYLOAD_TOO_LARGE"),
}


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id, time the request, and log one line for it."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _SAFE_REQUEST_ID.match(given) else request.app[REQUEST_IDS].new()
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
    except web.HTTPException as exc:
        status = exc.status
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        duration = time.perf_counter() - started
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(duration * 1000, 2),
            user=request.get(USERNAME),
        )
        if request.app[CONFIG].metrics:
            method = request.method if request.method in _METHODS else "OTHER"
            request.app[METRICS].observe_request(
                method, route_template(request), str(status), duration
            )
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the documented JSON answer."""
    try:
        return await handler(request)
    except ApiError as error:
        if error.status == 403:
            _log_refusal(error.code, error.errors)
        return json_response(
            error_body(error.message, error.code, error.errors), status=error.status
        )
    except DomainError as error:
        status = status_of(error)
        if status == 403:
            _log_refusal(error.code, {"_schema": [str(error)]})
        return json_response(error_body(error.message, error.code, error.errors), status=status)
    except GatewayError as error:
        log.warning("gateway error", error=str(error))
        request.app[METRICS].gateway_errors.inc()
        return json_response(error_body(error.message, error.code), status=502)
    except ValidationError as error:
        return json_response(
            error_body("Invalid JSON Format", "VALIDATION", _as_dict(error.messages)), status=400
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message, code = _HTTP_CODES.get(exc.status, (exc.reason, _code_of(exc.reason)))
        response = json_response(error_body(message, code), status=exc.status)
        if "Allow" in exc.headers:  # a 405 must say which methods are allowed (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error")
        return json_response(error_body("INTERNAL SERVER ERROR", "INTERNAL"), status=500)


def route_template(request: web.Request) -> str:
    """The route's template (``/sandbox/invoices/{reference}/pay``), never the path itself: a
    label must not hold an id. A path no route matched is "unmatched"."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def _code_of(reason: str) -> str:
    """A stable code from an HTTP reason phrase: "Request-URI Too Long" -> REQUEST_URI_TOO_LONG."""
    return re.sub(r"[^A-Z0-9]+", "_", reason.upper()).strip("_") or "HTTP_ERROR"


def _log_refusal(code: str, errors: dict[str, Any] | None) -> None:
    """An authenticated caller asked for what it may not: worth a warning, with the reason
    (the request line names the caller)."""
    reasons = (errors or {}).get("_schema") or [code]
    log.warning("request refused", code=code, reason="; ".join(map(str, reasons)))


def _as_dict(messages: Any) -> dict[str, Any]:
    return messages if isinstance(messages, dict) else {"_schema": messages}
