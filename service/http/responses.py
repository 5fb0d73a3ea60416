"""JSON answers and the HTTP-level refusal: what handlers, middleware and auth all speak.

A module of its own, importing nothing else of ``service.http``, so that the error middleware,
the authenticator and the body reader share ``ApiError`` and ``json_response`` without
importing one another.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """An HTTP-level refusal raised by handlers (auth, body parsing)."""

    def __init__(
        self, status: int, message: str, code: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON answer, serialised the same way everywhere (orjson, compact)."""
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    # marshmallow names list items by integer keys (transaction 0, 1, …); JSON makes them text.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def error_body(message: str, code: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return body
