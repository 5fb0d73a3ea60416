"""Log lines: JSON that never fails to render, and aiohttp's parser refusals without the bytes
they quote."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog
from aiohttp.http_exceptions import LineTooLong

from service.logging import configure_logging, protocol_logger


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """JSON logging configured onto a buffer standing in for stderr; undone afterwards."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("INFO", "json")
    yield buffer
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def test_a_line_with_integer_keys_and_a_huge_integer_is_still_json(
    log_lines: io.StringIO,
) -> None:
    """What orjson refuses is written by the standard library's encoder, never lost."""
    structlog.get_logger("t").info("odd", errors={0: ["bad"]}, amount=10**30)
    structlog.get_logger("t").info("plain", amount=5)

    first, second = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert first["errors"] == {"0": ["bad"]}
    assert first["amount"] == 10**30
    assert second["event"] == "plain"
    assert second["level"] == "info"


def test_a_parser_refusal_is_a_warning_without_the_bytes_it_quoted(
    log_lines: io.StringIO,
) -> None:
    secret = "Basic b25tYXJrZXQ6b25tYXJrZXQ="
    try:
        raise LineTooLong(secret.encode() + b"...", 8190)
    except LineTooLong:
        protocol_logger().exception("Error handling request from %s", "127.0.0.1")

    lines = log_lines.getvalue().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["level"] == "warning"
    assert record["event"] == "request refused by the HTTP parser: LineTooLong"
    assert "b25t" not in lines[0]
