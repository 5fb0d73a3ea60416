"""Logging with structlog: JSON lines when not on a terminal, readable lines on one.

Configured once at start-up. Each request binds its ``request_id`` into the context, so every
line logged while handling it carries the id; passwords, tokens and request bodies are never
logged.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """``log_format`` is ``json``, ``console``, or ``auto`` (console on a terminal)."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json)
        if as_json
        else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        # One write per line (message and newline together): ``print`` writes them apart, and
        # with ``serve --workers N`` the processes' lines interleaved in a shared stderr.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The standard library's records (aiohttp's, asyncio's) as the same lines, not Python's
    # bare "last resort" output.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=shared)
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def _json(event: dict[str, Any], **options: Any) -> str:
    # orjson: a line per request, and the standard library's encoder costs several times more.
    # What orjson refuses (an integer past 64 bits) is written by the standard library instead:
    # a log line must never fail.
    try:
        return orjson.dumps(
            event, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS
        ).decode()
    except TypeError:
        return json.dumps(event, default=options.get("default"))


def protocol_logger() -> logging.Logger:
    """The logger aiohttp's connection handler reports to (``handler_args``), made safe."""
    logger = logging.getLogger("service.http.protocol")
    if not any(isinstance(f, _WithoutClientBytes) for f in logger.filters):
        logger.addFilter(_WithoutClientBytes())
    return logger


class _WithoutClientBytes(logging.Filter):
    """aiohttp logs a request its parser refuses (a header over 8190 bytes, bad framing) at
    ERROR with a traceback whose message quotes up to 100 bytes of what the client sent: an
    Authorization header, a password. Keep the kind of error and drop the bytes; a client's
    bad request is a warning, not our error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = (
                "request refused by the HTTP parser: %s",
                (type(error).__name__,),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
