"""Reading request bodies: JSON objects only, with a clear 4xx for everything else.

A key may appear only once in each object. orjson, like most parsers, keeps the last of two
equal keys silently; a proxy, a signature check or a log reader in front of us may have read the
first, so a body with a repeated key means two things at once and is refused, at any depth.
orjson stays the parser (it refuses NaN, lone surrogates and invalid UTF-8); the standard
library's C scanner then reads the body once more only to see each object's keys, which costs
a few microseconds per checkout body (docs/api.md, "Request bodies").
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson
from aiohttp import web

from service.http.responses import ApiError

MAX_KEY_SHOWN = 100


class _RepeatedKey(ValueError):
    """A key that appears twice in one JSON object."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """One object's members as a dict; raises ``_RepeatedKey`` when a key repeats."""
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return members


# Read-only after construction; built once because json.loads(..., object_pairs_hook=...)
# would build a new decoder for every body.
_KEY_CHECKER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _malformed(reason: str) -> ApiError:
    return ApiError(400, "Invalid JSON Format", "MALFORMED_JSON", {"_schema": [reason]})


def _repeated_message(key: str) -> str:
    shown = key if len(key) <= MAX_KEY_SHOWN else key[:MAX_KEY_SHOWN] + "…"
    return f"The key {orjson.dumps(shown).decode()} appears more than once in one object."


# The tokens that matter in valid JSON: strings (a key when a colon follows) and brackets.
_TOKENS: Final = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"(\s*:)?|([{}\[\]])')


def _repeated_key_iteratively(text: str) -> str | None:
    """The first key that ``text`` (valid JSON) repeats within one object, read with a stack
    rather than recursion; slower than the C scanner, so only used for very deep bodies."""
    objects: list[set[str] | None] = []  # None for an array
    for match in _TOKENS.finditer(text):
        bracket = match.group(3)
        if bracket in ("{", "["):
            objects.append(set() if bracket == "{" else None)
        elif bracket:
            objects.pop()
        elif match.group(2):
            escaped = match.group(1)
            key: str = json.loads(f'"{escaped}"') if "\\" in escaped else escaped
            keys = objects[-1]  # a set: only an object has keys
            if keys is not None:
                if key in keys:
                    return key
                keys.add(key)
    return None


def _refuse_repeated_keys(raw: bytes) -> None:
    """Raises a 400 when any object of ``raw`` (valid JSON, as orjson read it) repeats a key."""
    try:
        _KEY_CHECKER.decode(raw.decode())
    except _RepeatedKey as repeated:
        raise _malformed(_repeated_message(repeated.key)) from None
    except RecursionError:
        # orjson allows 1024 levels, the scanner recurses and may stop earlier: deep bodies are
        # read again without recursion.
        key = _repeated_key_iteratively(raw.decode())
        if key is not None:
            raise _malformed(_repeated_message(key)) from None
    except ValueError:
        # Not expected after orjson accepted the body; refused rather than half-read.
        raise _malformed("The body is not valid JSON.") from None


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
        raise _malformed("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "Invalid JSON Format",
            "VALIDATION",
            {"_schema": ["The body must be a JSON object."]},
        )
    _refuse_repeated_keys(raw)
    return data
