"""How long one client may hold the server: to send its request, and to take its answer.

aiohttp 3.14 bounds the size of a request (a request line or header of at most 8190 bytes, at
most 128 headers: more is a 400 and a closed connection; a body of at most ``max_body_bytes``,
counted after decompression: 413), and its keep-alive timer, started when a connection opens and
again after each answer, closes a connection that has not sent complete request headers within
``keepalive_timeout_seconds``: that bounds both idle connections and headers sent one byte at a
time. It bounds neither how long a body may take to arrive nor how long an answer may wait for a
client that does not read it. ``within_client_limits`` adds both:

- the body is read in full, within ``request_read_timeout_seconds`` of the headers, before any
  handler runs: a body that never finishes answers 408, and no handler is ever cut off halfway,
  after it has appended events. Reading it here also answers a declared length over the limit
  with 413 before the body is sent, and a body that cannot be decoded with 400, not 500;
- the connection's socket gets ``TCP_USER_TIMEOUT`` (Linux) at its first request, so the kernel
  drops it once an answer has waited ``send_timeout_seconds`` for a client that neither reads
  nor acknowledges.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from service.config import Config
from service.http.keys import CONFIG, SEND_TIMEOUTS
from service.http.responses import ApiError


def server_options(config: Config) -> dict[str, Any]:
    """The connection settings ``web.run_app`` takes, from ``config``."""
    return {
        # Connections the kernel completes before we accept them. aiohttp's 128 overflows in a
        # burst while the event loop is busy, and each dropped SYN costs its client 1 s or more.
        "backlog": 1024,
        "keepalive_timeout": config.keepalive_timeout_seconds,
        # How long the unread rest of a refused body is drained, so that the client sees the
        # answer rather than a reset, before the connection closes: aiohttp's 10 s, and never
        # more patient than reading a body.
        "lingering_time": min(10.0, config.request_read_timeout_seconds),
        # Each request is logged once, by our own canonical line (with its request id).
        "access_log": None,
    }


@web.middleware
async def within_client_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bound how long the client may take to send its body and to take the answer."""
    config = request.app[CONFIG]
    _limit_unread_answers(request, config.send_timeout_seconds)
    # A multipart body is left to its streaming reader, which cannot start over from a body
    # read here; only the development sandbox's forms accept one.
    if request.body_exists and not request.content_type.startswith("multipart/"):
        declared = request.content_length or 0
        if declared > request.client_max_size:  # refused before it is sent, not after a MiB
            raise web.HTTPRequestEntityTooLarge(request.client_max_size, declared)
        try:
            async with asyncio.timeout(config.request_read_timeout_seconds):
                await request.read()  # kept by the request: the handler's read() gets it
        except TimeoutError:
            raise web.HTTPRequestTimeout() from None
        except web.RequestPayloadError:  # bad chunked framing or Content-Encoding
            raise ApiError(
                400,
                "Invalid JSON Format",
                "MALFORMED_BODY",
                {"_schema": ["The body cannot be decoded (Transfer- or Content-Encoding)."]},
            ) from None
    return await handler(request)


def _limit_unread_answers(request: web.Request, seconds: float) -> None:
    transport = request.transport
    milliseconds = round(seconds * 1000)
    # The app remembers which connections have their timeout already: a keep-alive connection
    # carries many requests, and a system call for each was measurable on a detail.
    limited = request.app[SEND_TIMEOUTS]
    if transport is None or limited.get(transport) == milliseconds:
        return
    sock = transport.get_extra_info("socket")
    if (
        sock is not None
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and hasattr(socket, "TCP_USER_TIMEOUT")  # Linux only
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
    limited[transport] = milliseconds
