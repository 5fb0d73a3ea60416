"""A fake Xendit: the parts of Xendit's HTTP API the service uses, run locally on 127.0.0.1.

It answers like the real API for invoices (``POST /v2/invoices``, ``GET /v2/invoices/{id}``,
``POST /invoices/{id}/expire!``) and dynamic QRIS codes (``POST /qr_codes``,
``GET /qr_codes/{id}/payments``, API version 2022-07-31): HTTP Basic authentication with the
secret key as the user and an empty password, validation of the bodies, and
``x-idempotency-key`` (the same key answers the same object, as a retry must see).

A test steers it: every request is recorded (method, path, headers, JSON body, arrival time);
``fail_next`` and ``answer_next`` replace the next answers (a 503, a 400, a body that is not
JSON); ``delay_next`` holds the next answers back (the object is created at once, only the answer
is late, as when a client times out on a request that did reach the gateway); ``down`` drops
every connection unanswered; ``pay``, ``pay_qr`` and ``expire`` change what the gateway knows
without sending any callback, as when a callback is lost.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

from service.config import Config
from service.gateway.qris import Merchant, build_qris

SECRET_KEY = "xnd_development_FakeXenditSecretKey0123456789"
QR_API_VERSION = "2022-07-31"
BUSINESS_ID = "5f27a14a9bf05c73dd040bc8"
MERCHANT = Merchant("Fake Xendit Merchant", "Jakarta", "936000000000000099")
_BODY: web.RequestKey[Any] = web.RequestKey("fake_xendit_body")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: CIMultiDictProxy[str]
    json: Any  # the parsed body; None without a body or when it is not JSON
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str


@dataclass
class _Controls:
    answers: list[_Answer] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)


def iso(moment: datetime) -> str:
    """A time as Xendit writes it: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error_code": code, "message": message}, status=status)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class FakeXendit:
    """The fake server's state and its aiohttp application (``app``)."""

    def __init__(
        self, secret_key: str = SECRET_KEY, *, clock: Callable[[], datetime] = _wall_clock
    ) -> None:
        self.secret_key = secret_key
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.invoices: dict[str, dict[str, Any]] = {}
        self.qr_codes: dict[str, dict[str, Any]] = {}
        self.qr_payments: dict[str, list[dict[str, Any]]] = {}
        self.down = False
        self._controls = _Controls()
        self._idempotent: dict[tuple[str, str], str] = {}
        self._released = asyncio.Event()
        self._server: TestServer | None = None

        @web.middleware
        async def control(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._control(request, handler)

        self.app = web.Application(middlewares=[control])
        self.app.router.add_post("/v2/invoices", self._create_invoice)
        self.app.router.add_get("/v2/invoices/{id}", self._get_invoice)
        self.app.router.add_post("/invoices/{id}/expire!", self._expire_invoice)
        self.app.router.add_post("/qr_codes", self._create_qr)
        self.app.router.add_get("/qr_codes/{id}/payments", self._qr_payments)

    # -- running it ------------------------------------------------------------------------------

    async def start(self, port: int | None = None) -> str:
        """Serve on 127.0.0.1 (a free port unless given); returns the base URL."""
        self._released = asyncio.Event()
        self._server = TestServer(self.app, host="127.0.0.1", port=port)
        await self._server.start_server()
        return self.url

    @property
    def url(self) -> str:
        port = self._server.port if self._server is not None else None
        assert port is not None, "the fake is not started"
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop serving; answers still held back by ``delay_next`` are let go first."""
        self._released.set()
        if self._server is not None:
            await self._server.close()
            self._server = None

    def service_config(self, config: Config) -> Config:
        """``config`` with the service's Xendit adapter pointed at this fake."""
        return dataclasses.replace(
            config, gateway="xendit", xendit_secret_key=SECRET_KEY, xendit_base_url=self.url
        )

    async def __aenter__(self) -> FakeXendit:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- test controls ---------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` (and a Xendit-style error body)."""
        body = json.dumps({"error_code": "FAKE_FAILURE", "message": f"fake failure {status}"})
        self.answer_next(n, status=status, body=body)

    def answer_next(
        self,
        n: int = 1,
        *,
        status: int = 200,
        body: str | bytes = b"",
        content_type: str = "application/json",
    ) -> None:
        """Answer the next ``n`` requests with exactly this, whatever they ask."""
        raw = body.encode() if isinstance(body, str) else body
        self._controls.answers.extend([_Answer(status, raw, content_type)] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold back the answers to the next ``n`` requests by ``seconds`` (done at once)."""
        self._controls.delays.extend([seconds] * n)

    def pay(
        self,
        invoice_id: str,
        amount: int | None = None,
        payment_id: str | None = None,
        *,
        status: str = "PAID",
        method: str = "BANK_TRANSFER",
        channel: str = "BCA",
        report_payment_id: bool = True,
    ) -> dict[str, Any]:
        """The buyer paid the invoice at Xendit (no callback is sent); returns the invoice.

        ``report_payment_id=False``: the invoice object does not carry the payment's id (Xendit's
        published Invoice schema has no ``payment_id``; only its callback does)."""
        invoice = self.invoices[invoice_id]
        now = iso(self.clock())
        invoice.update(
            status=status,
            paid_amount=invoice["amount"] if amount is None else amount,
            paid_at=now,
            payment_method=method,
            payment_channel=channel,
            payment_id=payment_id or f"pay-{secrets.token_hex(8)}",
            updated=now,
        )
        if not report_payment_id:
            del invoice["payment_id"]
        return invoice

    def pay_qr(
        self,
        qr_id: str,
        amount: int | None = None,
        payment_id: str | None = None,
        *,
        channel: str = "ID_DANA",
    ) -> dict[str, Any]:
        """The buyer scanned and paid the QR code (no callback is sent); returns the payment."""
        qr = self.qr_codes[qr_id]
        payment = {
            "id": payment_id or f"qrpy_{uuid.uuid4()}",
            "business_id": BUSINESS_ID,
            "currency": "IDR",
            "amount": qr["amount"] if amount is None else amount,
            "status": "SUCCEEDED",
            "created": iso(self.clock()),
            "qr_id": qr_id,
            "qr_string": qr["qr_string"],
            "reference_id": qr["reference_id"],
            "type": "DYNAMIC",
            "channel_code": channel,
            "expires_at": qr["expires_at"],
        }
        self.qr_payments[qr_id].append(payment)
        return payment

    def expire(self, invoice_id: str) -> dict[str, Any]:
        """The invoice expired at Xendit (its own timer, no callback sent); returns it."""
        invoice = self.invoices[invoice_id]
        invoice.update(status="EXPIRED", updated=iso(self.clock()))
        return invoice

    # -- reading what happened -------------------------------------------------------------------

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def invoices_for(self, external_id: str) -> list[dict[str, Any]]:
        """Every invoice created for one of our invoices, oldest first."""
        return [i for i in self.invoices.values() if i["external_id"] == external_id]

    # -- the server ------------------------------------------------------------------------------

    async def _control(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request[_BODY] = parsed
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                CIMultiDictProxy(CIMultiDict(request.headers)),
                parsed,
                body,
                time.monotonic(),
            )
        )
        if self.down:  # drop the connection without a word, as a dead gateway would
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        delay = self._controls.delays.pop(0) if self._controls.delays else 0.0
        response: web.StreamResponse
        if self._controls.answers:
            answer = self._controls.answers.pop(0)
            response = web.Response(
                status=answer.status, body=answer.body, content_type=answer.content_type
            )
        elif not self._authorized(request):
            response = _error(401, "INVALID_API_KEY", "API key is invalid")
        else:
            response = await handler(request)
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), delay)
        return response

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(decoded, f"{self.secret_key}:")

    def _replay(self, request: web.Request) -> str | None:
        key = request.headers.get("x-idempotency-key")
        return None if key is None else self._idempotent.get((request.path, key))

    def _remember(self, request: web.Request, object_id: str) -> None:
        key = request.headers.get("x-idempotency-key")
        if key is not None:
            self._idempotent[(request.path, key)] = object_id

    async def _create_invoice(self, request: web.Request) -> web.Response:
        known = self._replay(request)
        if known is not None:
            return web.json_response(self.invoices[known])
        body = request[_BODY]
        problem = _invoice_problem(body)
        if problem:
            return _error(400, "API_VALIDATION_ERROR", problem)
        now = self.clock()
        invoice_id = secrets.token_hex(12)
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "external_id": body["external_id"],
            "user_id": BUSINESS_ID,
            "status": "PENDING",
            "merchant_name": MERCHANT.name,
            "amount": body["amount"],
            "description": body["description"],
            "invoice_url": f"{request.url.origin()}/web/{invoice_id}",
            "expiry_date": iso(now + timedelta(seconds=body["invoice_duration"])),
            "currency": body.get("currency", "IDR"),
            "items": body["items"],
            "created": iso(now),
            "updated": iso(now),
        }
        self.invoices[invoice_id] = invoice
        self._remember(request, invoice_id)
        return web.json_response(invoice)

    async def _get_invoice(self, request: web.Request) -> web.Response:
        invoice = self.invoices.get(request.match_info["id"])
        if invoice is None:
            return _error(404, "INVOICE_NOT_FOUND_ERROR", "Could not find invoice by id")
        return web.json_response(invoice)

    async def _expire_invoice(self, request: web.Request) -> web.Response:
        invoice = self.invoices.get(request.match_info["id"])
        if invoice is None:
            return _error(404, "INVOICE_NOT_FOUND_ERROR", "Could not find invoice by id")
        if invoice["status"] in ("PAID", "SETTLED"):
            return _error(400, "INVOICE_ALREADY_PAID_ERROR", "A paid invoice cannot be expired")
        invoice.update(status="EXPIRED", updated=iso(self.clock()))
        return web.json_response(invoice)

    async def _create_qr(self, request: web.Request) -> web.Response:
        if request.headers.get("api-version") != QR_API_VERSION:
            return _error(400, "API_VALIDATION_ERROR", f"api-version must be {QR_API_VERSION}")
        known = self._replay(request)
        if known is not None:
            return web.json_response(self.qr_codes[known], status=201)
        body = request[_BODY]
        problem = _qr_problem(body)
        if problem:
            return _error(400, "API_VALIDATION_ERROR", problem)
        try:
            qr_string = build_qris(MERCHANT, body["amount"], body["reference_id"])
        except ValueError as error:
            return _error(400, "API_VALIDATION_ERROR", str(error))
        now = iso(self.clock())
        qr_id = f"qr_{uuid.uuid4()}"
        qr: dict[str, Any] = {
            "id": qr_id,
            "business_id": BUSINESS_ID,
            "reference_id": body["reference_id"],
            "type": "DYNAMIC",
            "currency": "IDR",
            "channel_code": "ID_DANA",
            "amount": body["amount"],
            "qr_string": qr_string,
            "expires_at": body["expires_at"],
            "status": "ACTIVE",
            "created": now,
            "updated": now,
            "metadata": None,
        }
        self.qr_codes[qr_id] = qr
        self.qr_payments[qr_id] = []
        self._remember(request, qr_id)
        return web.json_response(qr, status=201)

    async def _qr_payments(self, request: web.Request) -> web.Response:
        qr_id = request.match_info["id"]
        if qr_id not in self.qr_codes:
            return _error(404, "DATA_NOT_FOUND", "QR code not found")
        return web.json_response({"data": self.qr_payments[qr_id], "has_more": False})


def _invoice_problem(body: Any) -> str | None:
    """What is wrong with a create-invoice body, if anything."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("external_id"), str) or not body["external_id"]:
        return "external_id must be a non-empty string"
    if not _positive_int(body.get("amount")):
        return "amount must be a positive integer"
    if not _positive_int(body.get("invoice_duration")):
        return "invoice_duration must be an integer of at least 1"
    if not isinstance(body.get("description"), str):
        return "description must be a string"
    if body.get("currency", "IDR") != "IDR":
        return "currency must be IDR"
    items = body.get("items")
    if not isinstance(items, list):
        return "items must be a list"
    for item in items:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and _positive_int(item.get("quantity"))
            and isinstance(item.get("price"), int)
        ):
            return "each item needs a name, a positive quantity and a price"
    return None


def _qr_problem(body: Any) -> str | None:
    """What is wrong with a create-QR-code body, if anything."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("reference_id"), str) or not body["reference_id"]:
        return "reference_id must be a non-empty string"
    if body.get("type") != "DYNAMIC":
        return "type must be DYNAMIC"
    if body.get("currency") != "IDR":
        return "currency must be IDR"
    if not _positive_int(body.get("amount")):
        return "amount must be a positive integer"
    expires_at = body.get("expires_at")
    if not isinstance(expires_at, str):
        return "expires_at must be an ISO 8601 time"
    try:
        moment = datetime.fromisoformat(expires_at)
    except ValueError:
        return "expires_at must be an ISO 8601 time"
    if moment.tzinfo is None:
        return "expires_at must name its time zone"
    return None
