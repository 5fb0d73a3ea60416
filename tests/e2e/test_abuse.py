"""Abusive requests over HTTP: each gets a clear 4xx or a closed connection, fast; never a 500.

Oversized and never-finishing bodies, compressed bodies that expand past the limit or do not
decompress, nesting deeper than the JSON parser allows, huge arrays, megabyte strings, long and
many headers, long URLs and bytes that are not UTF-8 where text is expected. Cases covered
elsewhere are not repeated: a body just over the limit and a wrong content type
(``test_http_errors.py``, ``test_checkout.py``), 101 transactions, invalid UTF-8 in a JSON body
and malformed JSON (``test_checkout.py``), credentials that are too long or not UTF-8
(``test_auth_matrix.py``). What needs a real server process and raw sockets over time (slow
clients, many connections, memory) is in ``tests/integration/test_abuse_server.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import ClientResponse

from service.app import create_app
from service.config import Config
from service.http.keys import STORE
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body, raw_request

Json = dict[str, Any]
MIB = 1024 * 1024
FAST = 2.0  # seconds: every refusal here comes at once, whatever the size of the abuse
VALIDATION = ("Invalid JSON Format", "VALIDATION")


def raw_post(path: str, body: bytes, *headers: bytes, length: int | None = None) -> bytes:
    head = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: localhost",
        b"Content-Type: application/json",
        f"Content-Length: {len(body) if length is None else length}".encode(),
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def post_bytes(
    api: Api, path: str, raw: bytes, headers: dict[str, str] | None = None
) -> ClientResponse:
    """``raw`` posted as JSON (through a file object: the client warns about big bytes)."""
    return await api.client.post(
        path, data=io.BytesIO(raw), headers={"Content-Type": "application/json", **(headers or {})}
    )


async def assert_still_serving(api: Api) -> None:
    response = await api.client.get("/health")
    assert response.status == 200


async def head_position(api: Api) -> int:
    return await api.client.app[STORE].head_position()


def credentials(api: Api, auth: str | None) -> dict[str, str]:
    """The headers of the account an endpoint takes: a buyer's token, a platform's or the
    admin's Basic credentials, or none."""
    return {
        "bearer": api.bearer("usernew1"),
        "basic": api.basic("onmarket"),
        "admin": api.basic("admin"),
        None: {},
    }[auth]


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


# -- bodies: size, encoding, time ---------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    api: Api,
) -> None:
    """Content-Length: 10^12 with no body behind it: 413 at once, not after reading a MiB."""
    answer = await raw_request(api, raw_post("/auth", b"{", length=10**12))
    assert answer is not None
    assert answer.status == 413
    assert answer.json() == {"message": "Request body is too large", "code": "PAYLOAD_TOO_LARGE"}
    assert answer.headers.get("x-request-id")
    assert answer.seconds < FAST
    await assert_still_serving(api)


async def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    """No Content-Length to check up front: the body is counted as it arrives (2 MiB sent)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b" " * (64 * 1024)

    response = await api.client.post(
        "/auth", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_compressed_body_counts_at_its_decompressed_size(api: Api) -> None:
    """A gzip bomb (20 KB that expand to 20 MB) is refused with 413 once it passes 1 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    bomb = compressor.compress(b"{" + b" " * 20_000_000) + compressor.flush()
    assert len(bomb) < api.config.max_body_bytes / 10
    started = time.perf_counter()
    response = await post_bytes(api, "/auth", bomb, {"Content-Encoding": "gzip"})
    assert response.status == 413
    assert (await response.json())["code"] == "PAYLOAD_TOO_LARGE"
    assert time.perf_counter() - started < FAST


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decompress_is_400_not_500(api: Api, encoding: str) -> None:
    """Content-Encoding: gzip on bytes that are not gzip: 400 MALFORMED_BODY."""
    response = await api.client.post(
        "/auth",
        data=b"this is not compressed",
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": encoding,
            "Connection": "close",  # the server closes it: a payload error ends the connection
        },
    )
    assert response.status == 400
    body = await response.json()
    assert (body["message"], body["code"]) == ("Invalid JSON Format", "MALFORMED_BODY")
    await assert_still_serving(api)


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "x-unknown"])
async def test_an_encoding_the_server_cannot_decode_is_a_4xx(api: Api, encoding: str) -> None:
    """Brotli and zstd (no decoder installed) and unknown encodings: a 4xx, never a 500.

    For br and zstd aiohttp answers 400 in plain text before the app sees the request; an
    encoding it does not know reaches the app as it is, which finds no JSON in it."""
    answer = await raw_request(
        api, raw_post("/auth", b"\x00\x01garbage", f"Content-Encoding: {encoding}".encode())
    )
    assert answer is not None
    assert answer.status == 400, answer.body
    await assert_still_serving(api)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"zz\r\n{}\r\n0\r\n\r\n", id="chunk-size-not-hex"),
        pytest.param(b"2\r\n{}XX0\r\n\r\n", id="chunk-without-crlf"),
        pytest.param(b"ffffffffffffffffffff\r\n{}", id="chunk-size-overflow"),
    ],
)
async def test_broken_chunked_framing_is_a_4xx_or_a_closed_connection(
    api: Api, framing: bytes
) -> None:
    """Transfer-Encoding: chunked whose framing is wrong: never a 500, and the server serves on."""
    request = (
        b"POST /auth HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + framing
    )
    answer = await raw_request(api, request)
    if answer is not None:
        assert 400 <= answer.status < 500, answer.body
    await assert_still_serving(api)


@pytest.fixture
async def patient_api(aiohttp_client: AppFactory, config: Config, clock: FakeClock) -> Api:
    """The app with a 0.3 s limit on receiving a body."""
    short = dataclasses.replace(config, request_read_timeout_seconds=0.3)
    return Api(await aiohttp_client(create_app(short, clock=clock)), short, clock)


async def test_a_body_that_stops_arriving_answers_408_and_writes_nothing(
    patient_api: Api,
) -> None:
    """Half a body and then silence: 408 REQUEST_TIMEOUT once the read timeout passes; the
    handler never ran, so nothing was written."""
    api = patient_api
    before = await head_position(api)
    body = orjson.dumps(checkout_body())

    async def stalls() -> AsyncIterator[bytes]:
        yield body[:20]
        await asyncio.sleep(5)
        yield body[20:]

    started = time.perf_counter()
    response = await api.client.post(
        "/payment-checkout",
        data=stalls(),
        headers={"Content-Type": "application/json", **api.bearer("usernew1")},
    )
    assert response.status == 408
    assert await response.json() == {"message": "Request Timeout", "code": "REQUEST_TIMEOUT"}
    assert response.headers.get("X-Request-ID")
    assert time.perf_counter() - started < 0.3 + FAST
    assert await head_position(api) == before


async def test_a_body_that_arrives_in_pieces_within_the_limit_is_served(patient_api: Api) -> None:
    """The limit is on the whole body, not on a pause: pieces 50 ms apart within 0.3 s pass."""
    api = patient_api
    body = orjson.dumps(checkout_body())

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), len(body) // 3 + 1):
            yield body[start : start + len(body) // 3 + 1]
            await asyncio.sleep(0.05)

    response = await api.client.post(
        "/payment-checkout",
        data=pieces(),
        headers={"Content-Type": "application/json", **api.bearer("usernew1")},
    )
    assert response.status == 200, await response.text()


# -- nesting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1025, 100_000])
async def test_nesting_deeper_than_the_parser_allows_is_malformed_json(
    api: Api, depth: int
) -> None:
    """orjson refuses more than 1024 levels: 400 MALFORMED_JSON at once, no RecursionError."""
    started = time.perf_counter()
    response = await post_bytes(
        api, "/payment-checkout", b'{"transaction": ' + nested(depth) + b"}", api.bearer("usernew1")
    )
    assert response.status == 400
    body = await response.json()
    assert (body["message"], body["code"]) == ("Invalid JSON Format", "MALFORMED_JSON")
    assert time.perf_counter() - started < FAST


@pytest.mark.parametrize(
    ("path", "field", "auth"),
    [
        ("/payment-checkout", "transaction", "bearer"),
        ("/payment-checkout", "total_amount", "bearer"),
        ("/auth", "username", None),
        ("/invoice/done", "invoice_onmarket", "basic"),
        ("/balance/topup", "amount", "admin"),
    ],
)
async def test_deep_nesting_within_the_parser_limit_is_a_validation_error(
    api: Api, path: str, field: str, auth: str | None
) -> None:
    """1000 levels (just under orjson's limit) where a value is expected: 400 VALIDATION naming
    the field, and a short answer."""
    body = {
        "/payment-checkout": checkout_body(),
        "/auth": {"username": "usernew1", "password": "usernew1"},
        "/invoice/done": {"platform": "ONMARKET", "invoice_id": "OM1"},
        "/balance/topup": {"username": "usernew1", "amount": 1},
    }[path]
    raw = orjson.dumps({**body, field: 0}).replace(
        f'"{field}":0'.encode(), f'"{field}":'.encode() + nested(1000)
    )
    headers = credentials(api, auth)
    response = await post_bytes(api, path, raw, headers)
    assert response.status == 400, await response.text()
    answer = await response.json()
    assert (answer["message"], answer["code"]) == VALIDATION
    assert field in answer["errors"]
    assert len(await response.read()) < 1024


async def test_deep_nesting_with_an_idempotency_key_is_a_validation_error(api: Api) -> None:
    """300 levels in an unknown field of a checkout sent with an Idempotency-Key: 400."""
    raw = orjson.dumps(checkout_body())[:-1] + b',"extra":' + nested(300) + b"}"
    with structlog.testing.capture_logs():  # not rendered: the traceback's locals are deep
        response = await post_bytes(
            api,
            "/payment-checkout",
            raw,
            {"Idempotency-Key": "deep-nesting", **api.bearer("usernew1")},
        )
    assert response.status == 400, await response.text()


# -- huge arrays ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" + b",".join([b"0"] * 100_000) + b"]", id="top-level-array"),
        pytest.param(
            orjson.dumps({**checkout_body(), "extra": [0] * 100_000}), id="in-an-unknown-field"
        ),
        pytest.param(
            orjson.dumps({**checkout_body(), "service": ["x"] * 100_000}),
            id="where-a-string-belongs",
        ),
    ],
)
async def test_an_array_of_100000_items_is_refused_quickly_and_briefly(
    api: Api, raw: bytes
) -> None:
    """100,000 items where no list of them is allowed: 400 within 2 s, a short answer."""
    started = time.perf_counter()
    response = await post_bytes(api, "/payment-checkout", raw, api.bearer("usernew1"))
    answer = await response.read()
    assert response.status == 400, answer[:300]
    assert len(answer) < 1024
    assert time.perf_counter() - started < FAST


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(
            "/payment-checkout",
            {**checkout_body(), "transaction": [{}] * 5_000},
            id="5000-transactions",
        ),
        pytest.param("/auth", {f"k{i}": 0 for i in range(80_000)}, id="80000-unknown-fields"),
        pytest.param(
            "/payment-checkout", {**checkout_body(), "A" * (MIB - 4096): 1}, id="1mib-field-name"
        ),
    ],
)
async def test_a_validation_answer_stays_short_however_many_errors(
    api: Api, path: str, body: Json
) -> None:
    """Far too many transactions or unknown fields: 400 naming the problem in a short answer
    (a sample of the bad items at most), not one entry per bad item."""
    started = time.perf_counter()
    response = await post_bytes(api, path, orjson.dumps(body), api.bearer("usernew1"))
    answer = await response.read()
    assert response.status == 400
    assert len(answer) < 16 * 1024, f"{len(answer):,} bytes in {time.perf_counter() - started} s"


# -- long strings ---------------------------------------------------------------------------------

HUGE = "A" * (MIB - 4096)  # a value that still fits the 1 MiB body


@pytest.mark.parametrize(
    ("path", "auth", "body"),
    [
        pytest.param("/auth", None, {"username": HUGE, "password": "x"}, id="auth-username"),
        pytest.param("/auth", None, {"username": "usernew1", "password": HUGE}, id="password"),
        pytest.param(
            "/payment-checkout",
            "bearer",
            {**checkout_body(), "service": HUGE},
            id="checkout-service",
        ),
        pytest.param(
            "/invoice/done",
            "basic",
            {"platform": "ONMARKET", "invoice_id": HUGE},
            id="done-invoice-id",
        ),
        pytest.param(
            "/balance/topup", "admin", {"username": HUGE, "amount": 1}, id="topup-username"
        ),
        pytest.param(
            "/balance/topup",
            "admin",
            {"username": "usernew1", "amount": "9" * 500_000},
            id="amount",
        ),
    ],
)
async def test_a_megabyte_string_is_refused_without_being_echoed(
    api: Api, path: str, auth: str | None, body: Json
) -> None:
    """A value of almost 1 MiB: 400 VALIDATION, fast, and the answer is short and does not
    repeat it."""
    headers = credentials(api, auth)
    before = await head_position(api)
    started = time.perf_counter()
    response = await post_bytes(api, path, orjson.dumps(body), headers)
    answer = await response.read()
    assert response.status == 400, answer[:300]
    assert tuple(orjson.loads(answer)[key] for key in ("message", "code")) == VALIDATION
    assert len(answer) < 1024
    assert time.perf_counter() - started < FAST
    assert await head_position(api) == before


async def test_a_long_idempotency_key_is_refused(api: Api) -> None:
    """An Idempotency-Key of 8000 characters (under the header limit): 400 naming the header."""
    response = await api.client.post(
        "/payment-checkout",
        json=checkout_body(),
        headers={"Idempotency-Key": "k" * 8000, **api.bearer("usernew1")},
    )
    assert response.status == 400
    assert "Idempotency-Key" in (await response.json())["errors"]


async def test_a_long_request_id_is_replaced_not_echoed(api: Api) -> None:
    """An X-Request-ID of 8000 characters is not echoed (nor logged): a fresh id is used."""
    response = await api.client.get("/health", headers={"X-Request-ID": "r" * 8000})
    assert response.status == 200
    assert 0 < len(response.headers["X-Request-ID"]) <= 128


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(b"GET /health?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x", id="long-url"),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 9000, id="long-header"
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-" + b"n" * 9000 + b": v", id="long-name"
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join([b"X-H: v"] * 200),
            id="200-headers",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n" + b" b\r\n" * 2000 + b"X-E: 1",
            id="folded-header",
        ),
    ],
)
async def test_a_request_line_or_header_over_the_limits_is_400_and_closed(
    api: Api, request_head: bytes
) -> None:
    """Over 8190 bytes in the request line or a header, or more than 128 headers: aiohttp
    answers 400 (plain text, before the app sees it) and closes the connection."""
    answer = await raw_request(api, request_head + b"\r\n\r\n")
    if answer is not None:
        assert answer.status == 400, answer.body
    await assert_still_serving(api)


async def test_many_query_parameters_within_the_limit_are_answered(api: Api) -> None:
    """300 copies of ?invoice= in one URL (7.5 KB, under the 8190-byte limit): refused as a
    name given twice (test_strict_input), quickly."""
    query = "&".join(["invoice=OM1234567890123"] * 300)
    started = time.perf_counter()
    response = await api.client.get(f"/invoice/detail?{query}", headers=api.bearer("usernew1"))
    assert response.status == 400
    assert (await response.json())["errors"] == {"invoice": ["Given more than once."]}
    assert time.perf_counter() - started < FAST


# -- text that is not UTF-8 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["invoice=%FF%FE", "invoice=%C0%AF", "waybill_number=%ED%A0%80", "as_of=%FF"]
)
async def test_percent_encoded_bytes_that_are_not_utf8_are_a_validation_error(
    api: Api, query: str
) -> None:
    """Invalid UTF-8 (a stray byte, an overlong form, a surrogate) in the query: 400 VALIDATION
    naming the parameter."""
    response = await api.client.get(f"/invoice/detail?{query}", headers=api.bearer("usernew1"))
    assert response.status == 400
    answer = await response.json()
    assert (answer["message"], answer["code"]) == VALIDATION
    assert query.partition("=")[0] in answer["errors"]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(b"/invoice/detail?invoice=\xff\xfe", id="raw-bytes-in-query"),
        pytest.param(b"/invoice/\xff\xfe", id="raw-bytes-in-path"),
        pytest.param(b"/health?\x00=\x00", id="nul-in-query"),
    ],
)
async def test_raw_bytes_that_are_not_utf8_in_the_url_are_a_4xx(api: Api, target: bytes) -> None:
    """Bytes that are not UTF-8 (or NUL) sent unencoded in the request target: a 4xx or a
    closed connection, never a 500."""
    token = api.bearer("usernew1")["Authorization"].encode()
    answer = await raw_request(
        api, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + token + b"\r\n\r\n"
    )
    if answer is not None:
        assert 400 <= answer.status < 500, answer.body
    await assert_still_serving(api)


@pytest.mark.parametrize(
    ("header", "expect"),
    [
        pytest.param(b"Idempotency-Key: key-\xff\xfe", 400, id="idempotency-key"),
        pytest.param(b"X-Request-ID: id-\xff\xfe", 200, id="request-id"),
        pytest.param(b"Content-Type: application/json\xff", 415, id="content-type"),
    ],
)
async def test_header_values_that_are_not_utf8_are_handled(
    api: Api, header: bytes, expect: int
) -> None:
    """Raw non-UTF-8 bytes in a header: an Idempotency-Key is refused (400), a request id is
    replaced by a fresh one, a content type is not JSON (415); nothing is written."""
    before = await head_position(api)
    body = orjson.dumps(checkout_body())
    token = api.bearer("usernew1")["Authorization"].encode()
    head = [
        b"POST /payment-checkout HTTP/1.1",
        b"Host: localhost",
        b"Authorization: " + token,
        f"Content-Length: {len(body)}".encode(),
        header,
    ]
    if not header.startswith(b"Content-Type"):
        head.append(b"Content-Type: application/json")
    answer = await raw_request(api, b"\r\n".join(head) + b"\r\n\r\n" + body)
    assert answer is not None
    assert answer.status == expect, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    if header.startswith(b"X-Request-ID"):
        assert "\\x" not in answer.headers["x-request-id"]
        assert answer.headers["x-request-id"].isascii()
    else:
        assert await head_position(api) == before
