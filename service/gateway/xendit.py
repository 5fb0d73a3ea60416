"""The Xendit adapter: the gateway port over Xendit's HTTP API.

Invoices (``POST /v2/invoices``, ``GET /v2/invoices/{id}``, ``POST /invoices/{id}/expire!``) and
dynamic QRIS codes (``POST /qr_codes``, ``GET /qr_codes/{id}/payments``, API version
2022-07-31). Authentication is HTTP Basic with the secret key as the user and an empty password.

Every call has a timeout. Connection errors, timeouts, 429 and 5xx are retried a bounded number
of times with exponential backoff and jitter, then surface as ``GatewayUnavailable``; other 4xx
are ``GatewayRejected`` at once. Creating calls carry an ``x-idempotency-key`` derived from our
invoice id, so a retry after a timeout cannot create a second invoice at Xendit.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from service.gateway.port import (
    EXPIRED,
    PAID,
    PENDING,
    GatewayPayment,
    GatewayRejected,
    GatewayStatus,
    GatewayUnavailable,
    PaymentRequest,
)

log = structlog.get_logger("service.gateway.xendit")

QR_API_VERSION = "2022-07-31"
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_PAID_STATUSES = frozenset({"PAID", "SETTLED"})


class XenditGateway:
    name = "xendit"

    def __init__(
        self,
        secret_key: str,
        *,
        base_url: str = "https://api.xendit.co",
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.2,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not secret_key:
            raise ValueError("a Xendit secret key is required")
        self._auth = aiohttp.encode_basic_auth(secret_key, "")
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._session = session
        self._owns_session = session is None

    # -- the port ------------------------------------------------------------------------------

    async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
        seconds = int((request.expires_at - datetime.now(UTC)).total_seconds())
        body = {
            "external_id": request.invoice,
            "amount": request.amount,
            "currency": "IDR",
            "description": request.description,
            "invoice_duration": max(seconds, 1),
            "items": [
                {"name": item.name, "quantity": 1, "price": item.price} for item in request.items
            ],
        }
        answer = await self._call(
            "POST", "/v2/invoices", json=body, idempotency_key=f"invoice-{request.invoice}"
        )
        return GatewayPayment(_text(answer, "id"), payment_url=_text(answer, "invoice_url"))

    async def create_qr(self, request: PaymentRequest) -> GatewayPayment:
        body = {
            "reference_id": request.invoice,
            "type": "DYNAMIC",
            "currency": "IDR",
            "amount": request.amount,
            "expires_at": request.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        answer = await self._call(
            "POST",
            "/qr_codes",
            json=body,
            idempotency_key=f"qr-{request.invoice}",
            headers={"api-version": QR_API_VERSION},
        )
        return GatewayPayment(_text(answer, "id"), qr_string=_text(answer, "qr_string"))

    async def expire(self, reference: str) -> None:
        if reference.startswith("qr_"):
            return  # a dynamic QR code stops being payable at its expires_at; no call for it
        await self._call("POST", f"/invoices/{reference}/expire!")

    async def status(self, reference: str) -> GatewayStatus:
        if reference.startswith("qr_"):
            return await self._qr_status(reference)
        answer = await self._call("GET", f"/v2/invoices/{reference}")
        status = str(answer.get("status", PENDING)).upper()
        if status in _PAID_STATUSES:
            return GatewayStatus(
                reference,
                PAID,
                payment_id=str(answer.get("payment_id") or answer.get("id") or reference),
                paid_amount=_int(answer.get("paid_amount", answer.get("amount"))),
                paid_at=_time(answer.get("paid_at")),
                method=_optional_text(answer.get("payment_method")),
                channel=_optional_text(answer.get("payment_channel")),
            )
        return GatewayStatus(reference, EXPIRED if status == "EXPIRED" else PENDING)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- HTTP ----------------------------------------------------------------------------------

    async def _qr_status(self, reference: str) -> GatewayStatus:
        answer = await self._call(
            "GET", f"/qr_codes/{reference}/payments", headers={"api-version": QR_API_VERSION}
        )
        payments = answer.get("data") or []
        for payment in payments:
            if isinstance(payment, dict) and payment.get("status") == "SUCCEEDED":
                return GatewayStatus(
                    reference,
                    PAID,
                    payment_id=_text(payment, "id"),
                    paid_amount=_int(payment.get("amount")),
                    paid_at=_time(payment.get("created")),
                    method="QRIS",
                    channel=_optional_text(payment.get("channel_code")),
                )
        return GatewayStatus(reference, PENDING)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        all_headers = {"Authorization": self._auth, **(headers or {})}
        if idempotency_key is not None:
            all_headers["x-idempotency-key"] = idempotency_key
        session = self._client()
        url = f"{self._base_url}{path}"
        for attempt in range(1, self._attempts + 1):
            try:
                async with session.request(
                    method, url, json=json, headers=all_headers, timeout=self._timeout
                ) as response:
                    if response.status < 400:
                        answer = await response.json(content_type=None)
                        if not isinstance(answer, dict):
                            raise GatewayRejected(f"{method} {path}: the answer is not an object")
                        return answer
                    detail = (await response.text())[:500]
                    if response.status not in _RETRYABLE:
                        log.warning(
                            "xendit refused",
                            method=method,
                            path=path,
                            status=response.status,
                            detail=detail,
                        )
                        raise GatewayRejected(f"{method} {path}: {response.status}")
                    reason = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                reason = f"{type(error).__name__}: {error}"
            log.warning(
                "xendit call failed", method=method, path=path, attempt=attempt, reason=reason
            )
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1) * (1 + random.random()))
        raise GatewayUnavailable(f"{method} {path}: no answer after {self._attempts} attempts")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _text(answer: dict[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise GatewayRejected(f"the gateway's answer has no {key}")
    return value


def _optional_text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
