"""Xendit's adapter against the fake Xendit: the exact requests, retries, timeouts and refusals.

What goes over the wire is checked request by request: the endpoint, HTTP Basic authentication
with the secret key and an empty password, the QR API version, the idempotency key, and each body
field. Failures are classified as the port documents: a 5xx or 429, a dropped or refused
connection, a timeout or an answer that is not JSON are retried a bounded number of times with a
growing backoff and then surface as ``GatewayUnavailable``; any other 4xx, or a JSON answer that
lacks what the adapter needs, is ``GatewayRejected`` at once. A retry never creates a second
invoice at the gateway, and the secret key never reaches a log line.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import unused_port

from service.gateway.port import (
    EXPIRED,
    PAID,
    PENDING,
    GatewayRejected,
    GatewayStatus,
    GatewayUnavailable,
    PaymentRequest,
)
from service.gateway.xendit import XenditGateway
from tests.fakes.xendit import QR_API_VERSION, SECRET_KEY, FakeXendit, RecordedRequest
from tests.gateway.conftest import payment_request, xendit_for

BASIC_AUTH = "Basic " + base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
RETRYABLE = [429, 500, 502, 503, 504]
REFUSED = [400, 401, 403, 404, 409, 422]


def only(requests: list[RecordedRequest]) -> RecordedRequest:
    assert len(requests) == 1, requests
    return requests[0]


async def created_invoice(fake: FakeXendit, xendit: XenditGateway) -> str:
    """A PENDING invoice at the fake; the requests list is emptied afterwards."""
    reference = (await xendit.create_invoice(payment_request())).reference
    fake.requests.clear()
    return reference


async def created_qr(fake: FakeXendit, xendit: XenditGateway) -> str:
    """An active QR code at the fake; the requests list is emptied afterwards."""
    reference = (await xendit.create_qr(payment_request())).reference
    fake.requests.clear()
    return reference


# -- what is sent ----------------------------------------------------------------------------


async def test_create_invoice_posts_the_invoice_with_basic_auth(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """One POST /v2/invoices: Basic base64("<secret>:"), a JSON body with external_id = our
    invoice id, the amount, IDR, the description, the duration and one item per store."""
    request = payment_request(40200, ttl=3600)

    await xendit.create_invoice(request)

    sent = only(fake.requests)
    assert (sent.method, sent.path) == ("POST", "/v2/invoices")
    assert sent.headers["Authorization"] == BASIC_AUTH
    assert sent.headers["Content-Type"].startswith("application/json")
    assert isinstance(sent.json, dict)
    duration = sent.json.pop("invoice_duration")
    assert sent.json == {
        "external_id": request.invoice,
        "amount": 40200,
        "currency": "IDR",
        "description": "ONMARKET checkout",
        "items": [
            {"name": "INV/ONM/G-1", "quantity": 1, "price": 20100},
            {"name": "INV/ONM/G-2", "quantity": 1, "price": 20100},
        ],
    }
    assert isinstance(duration, int)
    assert 3595 <= duration <= 3600


@pytest.mark.parametrize("ttl", [60, 7200, 86400])
async def test_invoice_duration_is_the_seconds_left_until_expiry(
    fake: FakeXendit, xendit: XenditGateway, ttl: int
) -> None:
    """invoice_duration is the time from now to the request's expires_at, in whole seconds."""
    await xendit.create_invoice(payment_request(ttl=ttl))

    duration = only(fake.requests).json["invoice_duration"]
    assert ttl - 5 <= duration <= ttl


async def test_an_invoice_already_due_asks_for_the_shortest_duration(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """An expires_at in the past still sends a valid duration (1 s), never 0 or negative."""
    await xendit.create_invoice(payment_request(ttl=-60))

    assert only(fake.requests).json["invoice_duration"] == 1


async def test_create_invoice_answers_the_gateways_id_and_invoice_url(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """The reference is Xendit's invoice id and payment_url its invoice_url."""
    request = payment_request()

    payment = await xendit.create_invoice(request)

    (invoice,) = fake.invoices_for(request.invoice)
    assert payment.reference == invoice["id"]
    assert payment.payment_url == invoice["invoice_url"]
    assert payment.qr_string is None


async def test_create_invoice_carries_an_idempotency_key_of_our_invoice(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """x-idempotency-key names our invoice: the same for the same invoice, another for another."""
    first, second = payment_request(), payment_request()

    await xendit.create_invoice(first)
    await xendit.create_invoice(second)
    await xendit.create_invoice(first)  # asked again for the same invoice of ours

    keys = [r.headers["x-idempotency-key"] for r in fake.requests]
    assert first.invoice in keys[0]
    assert second.invoice in keys[1]
    assert keys[0] == keys[2] != keys[1]
    assert len(fake.invoices_for(first.invoice)) == 1  # the repeat got the same invoice


async def test_create_qr_sends_the_api_version_and_the_qr_body(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """One POST /qr_codes with api-version 2022-07-31, Basic auth, an idempotency key, and a
    DYNAMIC IDR code for the amount, referenced by our invoice id, expiring with it."""
    request = payment_request(35300)

    payment = await xendit.create_qr(request)

    sent = only(fake.requests)
    assert (sent.method, sent.path) == ("POST", "/qr_codes")
    assert sent.headers["api-version"] == QR_API_VERSION
    assert sent.headers["Authorization"] == BASIC_AUTH
    assert request.invoice in sent.headers["x-idempotency-key"]
    assert isinstance(sent.json, dict)
    expires_at = sent.json.pop("expires_at")
    assert sent.json == {
        "reference_id": request.invoice,
        "type": "DYNAMIC",
        "currency": "IDR",
        "amount": 35300,
    }
    assert expires_at.endswith("Z")
    assert datetime.fromisoformat(expires_at) == request.expires_at
    qr = fake.qr_codes[payment.reference]
    assert (payment.qr_string, payment.payment_url) == (qr["qr_string"], None)


async def test_expire_posts_to_the_invoice_expire_endpoint(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """expire(invoice) is one POST /invoices/{id}/expire! with Basic auth; Xendit then says
    EXPIRED."""
    reference = await created_invoice(fake, xendit)

    await xendit.expire(reference)

    sent = only(fake.requests)
    assert (sent.method, sent.path) == ("POST", f"/invoices/{reference}/expire!")
    assert sent.headers["Authorization"] == BASIC_AUTH
    assert fake.invoices[reference]["status"] == "EXPIRED"


async def test_expire_of_a_qr_code_sends_nothing(fake: FakeXendit, xendit: XenditGateway) -> None:
    """A dynamic QR code stops at its own expires_at: expiring it makes no request."""
    reference = await created_qr(fake, xendit)

    await xendit.expire(reference)

    assert fake.requests == []


async def test_status_gets_the_invoice(fake: FakeXendit, xendit: XenditGateway) -> None:
    """status(invoice) is one GET /v2/invoices/{id} with Basic auth."""
    reference = await created_invoice(fake, xendit)

    assert await xendit.status(reference) == GatewayStatus(reference, PENDING)

    sent = only(fake.requests)
    assert (sent.method, sent.path) == ("GET", f"/v2/invoices/{reference}")
    assert sent.headers["Authorization"] == BASIC_AUTH


async def test_status_of_a_qr_code_lists_its_payments(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """status(qr) is one GET /qr_codes/{id}/payments with the QR API version."""
    reference = await created_qr(fake, xendit)

    assert await xendit.status(reference) == GatewayStatus(reference, PENDING)

    sent = only(fake.requests)
    assert (sent.method, sent.path) == ("GET", f"/qr_codes/{reference}/payments")
    assert sent.headers["api-version"] == QR_API_VERSION
    assert sent.headers["Authorization"] == BASIC_AUTH


# -- what is understood ----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["PAID", "SETTLED"])
async def test_a_paid_or_settled_invoice_is_paid(
    fake: FakeXendit, xendit: XenditGateway, status: str
) -> None:
    """PAID and SETTLED both report the payment: its id, amount, time, method and channel."""
    reference = await created_invoice(fake, xendit)
    invoice = fake.pay(reference, payment_id="pay-42", status=status)

    reported = await xendit.status(reference)

    assert reported == GatewayStatus(
        reference,
        PAID,
        payment_id="pay-42",
        paid_amount=invoice["amount"],
        paid_at=datetime.fromisoformat(invoice["paid_at"]),
        method="BANK_TRANSFER",
        channel="BCA",
    )


async def test_an_invoice_expired_at_the_gateway_is_expired(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """An invoice Xendit expired on its own is reported EXPIRED."""
    reference = await created_invoice(fake, xendit)
    fake.expire(reference)

    assert await xendit.status(reference) == GatewayStatus(reference, EXPIRED)


async def test_a_paid_qr_code_reports_its_payment(fake: FakeXendit, xendit: XenditGateway) -> None:
    """A QR code with a SUCCEEDED payment is PAID, method QRIS, channel the wallet's."""
    reference = await created_qr(fake, xendit)
    payment = fake.pay_qr(reference, payment_id="qrpy-7", channel="ID_OVO")

    reported = await xendit.status(reference)

    assert reported == GatewayStatus(
        reference,
        PAID,
        payment_id="qrpy-7",
        paid_amount=payment["amount"],
        paid_at=datetime.fromisoformat(payment["created"]),
        method="QRIS",
        channel="ID_OVO",
    )


async def test_an_invoice_status_the_adapter_does_not_know_is_pending(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """A status other than PAID, SETTLED or EXPIRED is not a payment: PENDING."""
    fake.answer_next(body='{"id": "abc", "status": "SOMETHING_NEW"}')

    assert await xendit.status("abc") == GatewayStatus("abc", PENDING)


async def test_the_base_url_may_end_with_a_slash(fake: FakeXendit) -> None:
    """base_url "http://host:port/" still calls /v2/invoices, not //v2/invoices."""
    gateway = xendit_for(fake, base_url=fake.url + "/")
    try:
        await gateway.create_invoice(payment_request())
    finally:
        await gateway.close()

    assert only(fake.requests).path == "/v2/invoices"


def test_a_secret_key_is_required() -> None:
    """No secret key, no adapter: refused when it is built, not at the first checkout."""
    with pytest.raises(ValueError, match="secret key"):
        XenditGateway("")


async def test_a_given_session_is_used_and_left_open(fake: FakeXendit) -> None:
    """A session passed in is the caller's: used for the calls, not closed by close()."""
    async with aiohttp.ClientSession() as session:
        gateway = xendit_for(fake, session=session)
        await gateway.create_invoice(payment_request())
        await gateway.close()

        assert not session.closed
        assert len(fake.requests) == 1


# -- retries and failures ----------------------------------------------------------------------


async def test_two_503s_then_success_succeeds_with_three_requests(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """503, 503, then an answer: the call succeeds; the three requests are identical (same
    idempotency key, same body) and Xendit holds one invoice."""
    request = payment_request()
    fake.fail_next(2, status=503)

    payment = await xendit.create_invoice(request)

    sent = fake.requests_to("POST", "/v2/invoices")
    assert len(sent) == 3
    assert len({r.headers["x-idempotency-key"] for r in sent}) == 1
    assert sent[0].json == sent[1].json == sent[2].json
    (invoice,) = fake.invoices_for(request.invoice)
    assert payment.reference == invoice["id"]


@pytest.mark.parametrize("status", RETRYABLE)
async def test_a_retryable_status_is_retried(
    fake: FakeXendit, xendit: XenditGateway, status: int
) -> None:
    """429 and every 5xx the adapter knows are retried: one failure, then success."""
    fake.fail_next(1, status=status)

    await xendit.create_invoice(payment_request())

    assert len(fake.requests) == 2


@pytest.mark.parametrize("attempts", [1, 3, 5])
async def test_a_5xx_on_every_attempt_is_unavailable_after_exactly_attempts_requests(
    fake: FakeXendit, attempts: int
) -> None:
    """503 on every attempt: GatewayUnavailable after exactly ``attempts`` requests, no invoice
    at Xendit; the next call, once Xendit is back, works."""
    gateway = xendit_for(fake, attempts=attempts)
    try:
        fake.fail_next(attempts, status=503)
        with pytest.raises(GatewayUnavailable) as raised:
            await gateway.create_invoice(payment_request())
        assert len(fake.requests) == attempts
        assert fake.invoices == {}
        assert (raised.value.code, raised.value.message) == (
            "GATEWAY_UNAVAILABLE",
            "Payment gateway unavailable",
        )

        await gateway.create_invoice(payment_request())
        assert len(fake.invoices) == 1
    finally:
        await gateway.close()


OPERATIONS: dict[str, Callable[[XenditGateway, str], Awaitable[object]]] = {
    "create_invoice": lambda gateway, _: gateway.create_invoice(payment_request()),
    "create_qr": lambda gateway, _: gateway.create_qr(payment_request()),
    "expire": lambda gateway, reference: gateway.expire(reference),
    "status": lambda gateway, reference: gateway.status(reference),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("status", REFUSED)
async def test_a_4xx_is_rejected_at_once(
    fake: FakeXendit, xendit: XenditGateway, operation: str, status: int
) -> None:
    """Any other 4xx is GatewayRejected after one request: retrying would not help."""
    reference = await created_invoice(fake, xendit)
    fake.fail_next(1, status=status)

    with pytest.raises(GatewayRejected) as raised:
        await OPERATIONS[operation](xendit, reference)

    assert len(fake.requests) == 1
    assert raised.value.code == "GATEWAY_REJECTED"


async def test_a_wrong_secret_key_is_rejected_at_once(fake: FakeXendit) -> None:
    """Xendit's 401 for a wrong key is GatewayRejected after one request."""
    gateway = xendit_for(fake, secret_key="xnd_development_not_the_right_key")
    try:
        with pytest.raises(GatewayRejected):
            await gateway.create_invoice(payment_request())
    finally:
        await gateway.close()

    assert len(fake.requests) == 1
    assert fake.invoices == {}


async def test_an_unknown_invoice_is_rejected(fake: FakeXendit, xendit: XenditGateway) -> None:
    """Status or expiry of an invoice Xendit does not know (404): GatewayRejected, no retry."""
    unknown = "f" * 24
    with pytest.raises(GatewayRejected):
        await xendit.status(unknown)
    with pytest.raises(GatewayRejected):
        await xendit.expire(unknown)
    with pytest.raises(GatewayRejected):
        await xendit.status("qr_00000000-0000-0000-0000-000000000000")

    assert len(fake.requests) == 3


async def test_an_invalid_request_is_rejected_at_once(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """A body Xendit refuses (a reference too long for QRIS): GatewayRejected, one request."""
    request = payment_request()
    too_long = PaymentRequest("X" * 40, request.amount, request.description, request.expires_at)

    with pytest.raises(GatewayRejected):
        await xendit.create_qr(too_long)

    assert len(fake.requests) == 1


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_a_refused_connection_is_unavailable(fake: FakeXendit, operation: str) -> None:
    """Nothing listens at the base URL: GatewayUnavailable, promptly."""
    gateway = xendit_for(fake, base_url=f"http://127.0.0.1:{unused_port()}")
    started = time.monotonic()
    try:
        with pytest.raises(GatewayUnavailable):
            await OPERATIONS[operation](gateway, "a" * 24)
    finally:
        await gateway.close()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_a_dropped_connection_is_unavailable(
    fake: FakeXendit, xendit: XenditGateway, operation: str
) -> None:
    """Xendit drops every connection unanswered: GatewayUnavailable after the attempts."""
    reference = await created_invoice(fake, xendit)
    fake.down = True

    with pytest.raises(GatewayUnavailable):
        await OPERATIONS[operation](xendit, reference)

    assert len(fake.requests) >= 3


async def test_a_timeout_on_every_attempt_is_unavailable(fake: FakeXendit) -> None:
    """Answers slower than the adapter's timeout on every attempt: GatewayUnavailable after
    the attempts, long before the slow answers would have come."""
    gateway = xendit_for(fake, timeout=0.2, attempts=2)
    fake.delay_next(2, 5.0)
    started = time.monotonic()
    try:
        with pytest.raises(GatewayUnavailable):
            await gateway.create_invoice(payment_request())
    finally:
        await gateway.close()

    assert time.monotonic() - started < 2.0
    assert len(fake.requests) == 2


@pytest.mark.parametrize("kind", ["invoice", "qr"])
async def test_a_retry_after_a_timeout_creates_no_second_payment(
    fake: FakeXendit, kind: str
) -> None:
    """Xendit created the payment but its answer came too late: the retry carries the same
    idempotency key and gets the same payment, so Xendit holds one, not two."""
    gateway = xendit_for(fake, timeout=0.2, attempts=3)
    request = payment_request()
    fake.delay_next(1, 5.0)
    try:
        if kind == "qr":
            payment = await gateway.create_qr(request)
        else:
            payment = await gateway.create_invoice(request)
    finally:
        await gateway.close()

    assert len(fake.requests) == 2
    assert (
        fake.requests[0].headers["x-idempotency-key"]
        == (fake.requests[1].headers["x-idempotency-key"])
    )
    created = fake.qr_codes if kind == "qr" else fake.invoices
    assert list(created) == [payment.reference]


async def test_an_answer_that_is_not_json_is_unavailable_after_the_retries(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """A 200 that is not JSON (a proxy's HTML page) is treated as no answer: retried, then
    GatewayUnavailable after exactly the attempts."""
    fake.answer_next(3, body="<html>Bad gateway</html>", content_type="text/html")

    with pytest.raises(GatewayUnavailable):
        await xendit.create_invoice(payment_request())

    assert len(fake.requests) == 3


async def test_a_non_json_answer_once_is_retried_to_success(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """One garbled answer, then a good one: the call succeeds on the retry."""
    fake.answer_next(1, body="not json at all", content_type="text/plain")

    payment = await xendit.create_invoice(payment_request())

    assert payment.reference in fake.invoices
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("create_invoice", '{"status": "PENDING", "invoice_url": "http://127.0.0.1/x"}'),
        ("create_invoice", '{"id": "abc", "status": "PENDING"}'),
        ("create_invoice", '{"id": "", "invoice_url": "http://127.0.0.1/x"}'),
        ("create_qr", '{"id": "qr_1", "status": "ACTIVE"}'),
        ("create_qr", '{"qr_string": "000201", "status": "ACTIVE"}'),
        ("create_invoice", "[]"),
        ("status", '["PAID"]'),
        ("status", "null"),
    ],
)
async def test_a_json_answer_without_what_is_needed_is_rejected_at_once(
    fake: FakeXendit, xendit: XenditGateway, operation: str, body: str
) -> None:
    """JSON that is not an object, or lacks the id, invoice_url or qr_string: GatewayRejected
    after one request (the same request would get the same answer)."""
    fake.answer_next(1, body=body)

    with pytest.raises(GatewayRejected):
        await OPERATIONS[operation](xendit, "a" * 24)

    assert len(fake.requests) == 1


async def test_the_backoff_grows_between_attempts(fake: FakeXendit) -> None:
    """backoff b: the waits are about b, 2b, 4b (each with up to +100 % jitter), and there is
    no wait after the last attempt."""
    backoff = 0.05
    gateway = xendit_for(fake, attempts=4, backoff=backoff)
    fake.fail_next(4, status=503)
    try:
        with pytest.raises(GatewayUnavailable):
            await gateway.create_invoice(payment_request())
        raised_at = time.monotonic()
    finally:
        await gateway.close()

    arrivals = [r.at for r in fake.requests]
    assert len(arrivals) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    slack = 0.1  # scheduling noise on a busy machine
    for n, gap in enumerate(gaps):
        least = backoff * 2**n
        assert least * 0.9 <= gap <= 2 * least + slack, gaps
    assert gaps[2] > gaps[0], gaps
    assert raised_at - arrivals[-1] < backoff * 8 * 0.9, "waited after the last attempt"


async def test_failures_are_logged_without_the_secret_key(fake: FakeXendit) -> None:
    """Each failed attempt is logged (path, attempt, reason); no line carries the secret key or
    the Authorization value, whatever failed."""
    gateway = xendit_for(fake)
    refused = xendit_for(fake, base_url=f"http://127.0.0.1:{unused_port()}")
    with structlog.testing.capture_logs() as logs:
        try:
            fake.fail_next(3, status=503)
            with pytest.raises(GatewayUnavailable):
                await gateway.create_invoice(payment_request())
            fake.fail_next(1, status=401)
            with pytest.raises(GatewayRejected):
                await gateway.create_qr(payment_request())
            with pytest.raises(GatewayUnavailable):
                await refused.status("a" * 24)
        finally:
            await gateway.close()
            await refused.close()

    failed = [e for e in logs if e["event"] == "xendit call failed"]
    assert [e["attempt"] for e in failed] == [1, 2, 3, 1, 2, 3]
    assert any(e["event"] == "xendit refused" and e["status"] == 401 for e in logs)
    encoded = BASIC_AUTH.removeprefix("Basic ")
    for event in logs:
        text = repr(event)
        assert SECRET_KEY not in text, text
        assert encoded not in text, text


async def test_calls_run_concurrently_on_one_adapter(
    fake: FakeXendit, xendit: XenditGateway
) -> None:
    """Many checkouts at once share the adapter: each gets its own invoice."""
    requests = [payment_request() for _ in range(20)]

    payments = await asyncio.gather(*(xendit.create_invoice(r) for r in requests))

    assert len({p.reference for p in payments}) == 20
    for request, payment in zip(requests, payments, strict=True):
        (invoice,) = fake.invoices_for(request.invoice)
        assert invoice["id"] == payment.reference


# -- the fake itself -------------------------------------------------------------------------
# The tests above are only as strict as the fake: it must refuse what Xendit refuses.

GOOD_INVOICE = {
    "external_id": "OM0000000000001",
    "amount": 1000,
    "invoice_duration": 60,
    "description": "d",
    "items": [],
}
GOOD_QR = {
    "reference_id": "OM0000000000001",
    "type": "DYNAMIC",
    "currency": "IDR",
    "amount": 1000,
    "expires_at": "2030-01-01T00:00:00Z",
}
QR = {"api-version": QR_API_VERSION}
WRONG_AUTH = "Basic " + base64.b64encode(f"{SECRET_KEY}:x".encode()).decode()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", "/v2/invoices", {"Authorization": ""}, GOOD_INVOICE, 401),
        ("POST", "/v2/invoices", {"Authorization": WRONG_AUTH}, GOOD_INVOICE, 401),
        ("POST", "/v2/invoices", {}, {**GOOD_INVOICE, "amount": 0}, 400),
        ("POST", "/v2/invoices", {}, {**GOOD_INVOICE, "amount": "1000"}, 400),
        ("POST", "/v2/invoices", {}, {**GOOD_INVOICE, "invoice_duration": 0}, 400),
        ("POST", "/v2/invoices", {}, {**GOOD_INVOICE, "external_id": 7}, 400),
        ("POST", "/v2/invoices", {}, {**GOOD_INVOICE, "items": {}}, 400),
        ("POST", "/v2/invoices", {}, GOOD_INVOICE, 200),
        ("GET", "/v2/invoices/" + "0" * 24, {}, None, 404),
        ("POST", "/invoices/" + "0" * 24 + "/expire!", {}, None, 404),
        ("POST", "/qr_codes", {}, GOOD_QR, 400),
        ("POST", "/qr_codes", QR, {**GOOD_QR, "type": "STATIC"}, 400),
        ("POST", "/qr_codes", QR, {**GOOD_QR, "expires_at": "tomorrow"}, 400),
        ("POST", "/qr_codes", QR, GOOD_QR, 201),
        ("GET", "/qr_codes/qr_unknown/payments", QR, None, 404),
    ],
)
async def test_the_fake_refuses_what_xendit_refuses(
    fake: FakeXendit,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, object] | None,
    status: int,
) -> None:
    """Missing or wrong credentials: 401; an invalid body or a missing QR api-version: 400; an
    unknown object: 404; a valid request: its success status."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, fake.url + path, json=body, headers={"Authorization": BASIC_AUTH, **headers}
        ) as response,
    ):
        assert response.status == status, await response.text()
        answer = await response.json()
    assert isinstance(answer, dict)
    if status >= 400:
        assert set(answer) == {"error_code", "message"}
