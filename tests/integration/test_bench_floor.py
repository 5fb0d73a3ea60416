"""The HTTP benchmark's floor app does the work it stands for, or its figure would prove nothing.

``bench/floor_app.py`` is the lower bound the benchmark prints beside the checkout and detail
targets: these tests hold it to what its docstring claims (a checked token, the service's own
schemas, an event durably in the file before the answer, one log line) on a real SQLite file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from aiohttp.test_utils import TestClient

from bench.floor_app import create_app
from bench.loadgen import checkout_body
from service.security import TokenClaims, issue_token

SECRET = "floor-test-secret-of-enough-length-0123456789"
DETAIL = {"invoice": "OX1", "status": "PENDING", "transaction": []}


def token(secret: str = SECRET, expires_in: timedelta = timedelta(hours=1)) -> dict[str, str]:
    claims = TokenClaims("buyer1", "buyer", None, datetime.now(UTC) + expires_in)
    return {"Authorization": f"Bearer {issue_token(claims, secret.encode())}"}


@pytest.fixture
async def floor(
    tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> tuple[TestClient[Any, Any], Path]:
    database = tmp_path / "floor.db"
    client = await aiohttp_client(create_app(database, SECRET, "FULL", DETAIL))
    return client, database


def stored_checkouts(database: Path) -> list[dict[str, Any]]:
    """What a fresh connection finds in the file: committed rows only."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT stream_id, data, metadata FROM events WHERE type = 'CheckoutAccepted'"
        ).fetchall()
    return [
        {"stream": stream, "data": orjson.loads(data), "metadata": orjson.loads(metadata)}
        for stream, data, metadata in rows
    ]


async def test_a_checkout_is_in_the_file_before_its_answer(
    floor: tuple[TestClient[Any, Any], Path],
) -> None:
    client, database = floor
    body = checkout_body("INV/F/1", "XENDIT")

    response = await client.post("/floor/checkout", data=body, headers=token())

    assert response.status == 200
    answer = await response.json()
    assert stored_checkouts(database) == [
        {
            "stream": f"floor-{answer['invoice']}",
            "data": orjson.loads(body),
            "metadata": {"actor": "buyer1"},
        }
    ]


async def test_each_checkout_appends_one_event_to_a_stream_of_its_own(
    floor: tuple[TestClient[Any, Any], Path],
) -> None:
    client, database = floor
    for n in range(3):
        body = checkout_body(f"INV/F/{n}", "XENDIT")
        response = await client.post("/floor/checkout", data=body, headers=token())
        assert response.status == 200

    streams = [checkout["stream"] for checkout in stored_checkouts(database)]
    assert len(streams) == len(set(streams)) == 3


@pytest.mark.parametrize(
    "headers",
    [
        {},
        token(secret="another-secret-of-enough-length-0123456789ab"),
        token(expires_in=-timedelta(1)),
    ],
    ids=["no token", "wrong signature", "expired"],
)
async def test_a_checkout_without_a_valid_token_is_refused_and_not_stored(
    floor: tuple[TestClient[Any, Any], Path], headers: dict[str, str]
) -> None:
    client, database = floor

    response = await client.post(
        "/floor/checkout", data=checkout_body("INV/F/1", "XENDIT"), headers=headers
    )

    assert response.status == 401
    assert stored_checkouts(database) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        orjson.dumps({"total_amount": 1}),
        checkout_body("INV/F/1", "CASH"),
        # The schema's own cross-check: the total must be the lines' sum.
        checkout_body("INV/F/1", "XENDIT").replace(b'"total_amount":40200', b'"total_amount":1'),
    ],
    ids=["not json", "fields missing", "unknown source", "wrong total"],
)
async def test_the_service_schema_refuses_what_the_service_refuses(
    floor: tuple[TestClient[Any, Any], Path], body: bytes
) -> None:
    client, database = floor

    response = await client.post("/floor/checkout", data=body, headers=token())

    assert response.status == 400
    assert stored_checkouts(database) == []


async def test_detail_reads_the_captured_answer_from_the_file(
    floor: tuple[TestClient[Any, Any], Path],
) -> None:
    client, _ = floor

    response = await client.get("/floor/detail", params={"invoice": "OX1"}, headers=token())

    assert response.status == 200
    assert await response.json() == DETAIL


async def test_detail_checks_the_token_and_the_query(
    floor: tuple[TestClient[Any, Any], Path],
) -> None:
    client, _ = floor

    unsigned = await client.get("/floor/detail", params={"invoice": "OX1"})
    no_invoice = await client.get("/floor/detail", headers=token())

    assert (unsigned.status, no_invoice.status) == (401, 400)


async def test_each_request_logs_one_line_at_info(
    floor: tuple[TestClient[Any, Any], Path],
) -> None:
    client, _ = floor

    with structlog.testing.capture_logs() as logs:
        body = checkout_body("INV/F/1", "XENDIT")
        await client.post("/floor/checkout", data=body, headers=token())
        await client.get("/floor/detail", params={"invoice": "OX1"}, headers=token())

    assert [(log["event"], log["log_level"]) for log in logs] == [
        ("checkout accepted", "info"),
        ("detail read", "info"),
    ]
