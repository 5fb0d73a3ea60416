"""Reading request bodies: JSON objects only, with a clear 4xx for everything else."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from service.http.responses import ApiError


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 415, 413 or 400 when it is not one."""
    if request.content_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json", "UNSUPPORTED_MEDIA_TYPE")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "Request body is too large", "PAYLOAD_TOO_LARGE") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Also invalid UTF-8, NaN, and nesting deeper than orjson's limit.
        raise ApiError(
            400,
            "Invalid JSON Format",
            "MALFORMED_JSON",
            {"_schema": ["The body is not valid JSON."]},
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "Invalid JSON Format",
            "VALIDATION",
            {"_schema": ["The body must be a JSON object."]},
        )
    return data
