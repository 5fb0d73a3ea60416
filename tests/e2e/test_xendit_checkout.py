"""The whole service with Xendit's adapter, against the fake Xendit on 127.0.0.1.

A XENDIT checkout answers the gateway's own invoice (its id and invoice_url), a QRIS checkout its
QR code; the invoice sent to Xendit names our invoice, its amount, items and duration. When
Xendit fails every attempt or cannot be reached, checkout answers 502 with the documented body
and writes nothing: no invoice, no reservation, so the same marketplace invoices can be checked
out as soon as Xendit is back. Canceling a PENDING invoice expires it at Xendit, and still
cancels when Xendit is down. The secret key never reaches a log line.

The clock starts at the real time: Xendit's invoice_duration is counted from the wall clock, so
a clock months away would make every invoice already due at Xendit.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from service.app import create_app
from service.config import Config
from service.gateway.qris import parse_emv
from service.gateway.xendit import XenditGateway
from service.http.keys import STORE
from tests.e2e.conftest import XENDIT_ATTEMPTS, Api, AppFactory, FakeClock, checkout_body, statuses
from tests.fakes.xendit import SECRET_KEY, FakeXendit
from tests.sqlviews import views_query

pytestmark = pytest.mark.backends("sqlite", "postgresql")

TOTAL = 40200  # the default two-store checkout
UNAVAILABLE = {"message": "Payment gateway unavailable", "code": "GATEWAY_UNAVAILABLE"}
REJECTED = {"message": "Payment gateway refused the request", "code": "GATEWAY_REJECTED"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


async def post_checkout(api: Api, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
    response = await api.client.post(
        "/payment-checkout", json=body, headers={**api.bearer("usernew1"), **headers}
    )
    return response.status, await response.json()


async def written(api: Api) -> tuple[int, int]:
    """The log's head and the number of invoices: both unchanged when nothing was written."""
    store = api.client.app[STORE]
    (count,) = (await views_query(store, "SELECT COUNT(*) FROM invoice_view"))[0]
    return await store.head_position(), int(count)


# -- checkout --------------------------------------------------------------------------------


async def test_a_xendit_checkout_answers_the_gateways_invoice(xapi: Api, fake: FakeXendit) -> None:
    """payment_url is the fake's invoice_url and xendit_invoice its id; Xendit was asked for our
    invoice id, the total, the stores as items and the 2 h until expiry."""
    body = checkout_body()

    status, created = await post_checkout(xapi, body)

    assert status == 200, created

    (invoice,) = fake.invoices_for(created["invoice"])
    assert created["xendit_invoice"] == invoice["id"]
    assert created["payment_url"] == invoice["invoice_url"]
    sent = fake.requests_to("POST", "/v2/invoices")[0].json
    assert sent["external_id"] == created["invoice"]
    assert sent["amount"] == TOTAL
    assert sent["description"] == "ONMARKET checkout"
    assert 7200 - 30 <= sent["invoice_duration"] <= 7200
    assert sent["items"] == [
        {
            "name": line["invoice_onmarket"],
            "quantity": 1,
            "price": line["amount"] + line["freight_charge"] + line["insurance_amount"],
        }
        for line in body["transaction"]
    ]
    assert sum(item["price"] for item in sent["items"]) == TOTAL
    detail = await xapi.detail(created["invoice"])
    assert (detail["xendit_invoice"], detail["xendit_url"]) == (
        invoice["id"],
        invoice["invoice_url"],
    )
    assert statuses(detail) == ("PENDING", ["PENDING", "PENDING"])


async def test_a_qris_checkout_answers_the_gateways_qr_code(xapi: Api, fake: FakeXendit) -> None:
    """xendit_invoice is the fake's qr_ id and qr_string its payload, for our invoice's total."""
    created = await xapi.checkout(source="QRIS")

    qr = fake.qr_codes[created["xendit_invoice"]]
    assert created["xendit_invoice"].startswith("qr_")
    assert created["qr_string"] == qr["qr_string"]
    assert (qr["reference_id"], qr["amount"]) == (created["invoice"], TOTAL)
    assert parse_emv(created["qr_string"])["54"] == str(TOTAL)
    assert datetime.fromisoformat(qr["expires_at"]) == datetime.fromisoformat(created["expired_at"])


async def test_the_gateway_named_in_the_settings_is_used(
    fake: FakeXendit, aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """gateway: xendit with a base URL and key in the settings: checkouts go to that URL with
    that key, and the sandbox's routes are not served."""
    settings = fake.service_config(config)
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)

    created = await api.checkout()

    sent = fake.requests_to("POST", "/v2/invoices")[0]
    expected = base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {expected}"
    assert created["xendit_invoice"] in fake.invoices
    response = await api.client.post(f"/sandbox/invoices/{created['xendit_invoice']}/pay", json={})
    assert response.status == 404


@pytest.mark.parametrize("failure", ["5xx", "down"])
async def test_checkout_when_the_gateway_fails_answers_502_and_writes_nothing(
    xapi: Api, fake: FakeXendit, failure: str
) -> None:
    """Xendit fails every attempt (503s) or drops every connection: 502 GATEWAY_UNAVAILABLE,
    nothing in the log, no reservation; once Xendit is back the same marketplace invoices check
    out."""
    body = checkout_body(source="XENDIT")
    before = await written(xapi)
    if failure == "5xx":
        fake.fail_next(XENDIT_ATTEMPTS, status=503)
    else:
        fake.down = True

    assert await post_checkout(xapi, body) == (502, UNAVAILABLE)

    assert await written(xapi) == before
    assert fake.invoices == {}
    assert len(fake.requests) >= XENDIT_ATTEMPTS
    fake.down = False
    status, created = await post_checkout(xapi, body)
    assert status == 200, created
    assert fake.invoices_for(created["invoice"])


async def test_qris_checkout_when_the_gateway_is_down_answers_502_and_writes_nothing(
    xapi: Api, fake: FakeXendit
) -> None:
    """The same for QRIS: 502 GATEWAY_UNAVAILABLE and nothing written."""
    body = checkout_body(source="QRIS")
    before = await written(xapi)
    fake.down = True

    assert await post_checkout(xapi, body) == (502, UNAVAILABLE)

    assert await written(xapi) == before
    fake.down = False
    assert (await post_checkout(xapi, body))[0] == 200


async def test_checkout_refused_by_the_gateway_answers_502_rejected(
    xapi: Api, fake: FakeXendit
) -> None:
    """Xendit refuses the request (a 4xx): 502 GATEWAY_REJECTED after one request, nothing
    written."""
    body = checkout_body()
    before = await written(xapi)
    fake.fail_next(1, status=400)

    assert await post_checkout(xapi, body) == (502, REJECTED)

    assert len(fake.requests) == 1
    assert await written(xapi) == before
    assert (await post_checkout(xapi, body))[0] == 200


async def test_a_balance_checkout_needs_no_gateway(xapi: Api, fake: FakeXendit) -> None:
    """Paying from the balance works with Xendit down, and never calls it."""
    await xapi.top_up("usernew1", TOTAL)
    fake.down = True

    created = await xapi.checkout(source="BALANCE")

    assert created["status"] == "PAID"
    assert fake.requests == []


async def test_a_checkout_repeated_with_its_idempotency_key_calls_the_gateway_once(
    xapi: Api, fake: FakeXendit
) -> None:
    """The same request with the same Idempotency-Key answers the first checkout again,
    without a second invoice at Xendit."""
    body = checkout_body()
    first = await post_checkout(xapi, body, **{"Idempotency-Key": "xendit-once"})
    again = await post_checkout(xapi, body, **{"Idempotency-Key": "xendit-once"})

    assert first == again
    assert first[0] == 200
    assert len(fake.invoices) == 1


@pytest.mark.parametrize("race", ["same numbers", "same idempotency key"])
async def test_a_checkout_that_loses_a_race_leaves_nothing_payable_at_the_gateway(
    xapi: Api, fake: FakeXendit, race: str, aiohttp_client: AppFactory, clock: FakeClock
) -> None:
    """Two checkouts race (the same marketplace invoices, or the same Idempotency-Key) at two
    processes on one database (in one, the second would wait for the first's reservations): one
    invoice is written, and any invoice Xendit made for the loser is expired there, so the buyer
    cannot pay an invoice that does not exist."""
    body = checkout_body()
    headers = {"Idempotency-Key": "race-key"} if race == "same idempotency key" else {}
    gateway = XenditGateway(SECRET_KEY, base_url=fake.url, timeout=2.0, attempts=XENDIT_ATTEMPTS)
    other = await aiohttp_client(create_app(xapi.config, clock=clock, gateway=gateway))
    fake.delay_next(2, 0.1)  # both pass the first reservation check before either writes

    answers = await asyncio.gather(
        post_checkout(xapi, body, **headers),
        post_checkout(Api(other, xapi.config, clock), body, **headers),
    )

    winners = {answer["invoice"] for status, answer in answers if status == 200}
    assert len(winners) == 1, answers
    (winner,) = winners
    assert len(fake.invoices) == 2  # both reached Xendit: the race really happened
    assert [i["status"] for i in fake.invoices_for(winner)] == ["PENDING"]
    for invoice in fake.invoices.values():
        if invoice["external_id"] != winner:
            assert invoice["status"] == "EXPIRED", invoice
    rows = await views_query(xapi.client.app[STORE], "SELECT invoice FROM invoice_view")
    assert [invoice for (invoice,) in rows] == [winner]


# -- cancel ----------------------------------------------------------------------------------


async def test_a_pending_cancel_expires_the_invoice_at_the_gateway(
    xapi: Api, fake: FakeXendit
) -> None:
    """Canceling a PENDING XENDIT invoice calls POST /invoices/{id}/expire! once: Xendit's
    invoice is EXPIRED and can no longer be paid."""
    created = await xapi.checkout()
    reference = created["xendit_invoice"]

    canceled = await xapi.platform("cancel", invoice_id=created["invoice"])

    assert canceled == {"message": "INVOICE CANCELED"}
    assert len(fake.requests_to("POST", f"/invoices/{reference}/expire!")) == 1
    assert fake.invoices[reference]["status"] == "EXPIRED"
    assert (await xapi.detail(created["invoice"]))["status"] == "CANCELED"


async def test_a_pending_qris_cancel_makes_no_gateway_call(xapi: Api, fake: FakeXendit) -> None:
    """A QR code expires by itself at its expires_at: canceling its invoice calls nothing."""
    created = await xapi.checkout(source="QRIS")
    fake.requests.clear()

    assert await xapi.platform("cancel", invoice_id=created["invoice"]) == {
        "message": "INVOICE CANCELED"
    }
    assert fake.requests == []


@pytest.mark.parametrize("failure", ["5xx", "down"])
async def test_a_cancel_while_the_gateway_fails_still_cancels(
    xapi: Api, fake: FakeXendit, failure: str
) -> None:
    """The cancel is committed whatever Xendit says: 200 INVOICE CANCELED, the invoice
    CANCELED, its marketplace invoices free again."""
    body = checkout_body()
    status, created = await post_checkout(xapi, body)
    assert status == 200
    if failure == "5xx":
        fake.fail_next(XENDIT_ATTEMPTS, status=503)
    else:
        fake.down = True

    canceled = await xapi.platform("cancel", invoice_id=created["invoice"])

    assert canceled == {"message": "INVOICE CANCELED"}
    assert (await xapi.detail(created["invoice"]))["status"] == "CANCELED"
    assert fake.invoices[created["xendit_invoice"]]["status"] == "PENDING"  # it never got there
    fake.down = False
    assert (await post_checkout(xapi, body))[0] == 200


async def test_a_cancel_racing_a_payment_at_the_gateway_cancels_and_credits_the_buyer(
    xapi: Api, fake: FakeXendit
) -> None:
    """The buyer paid at Xendit just before the cancel (the callback not in yet): Xendit refuses
    to expire a paid invoice, the cancel still answers 200, and the payment's callback then
    credits the buyer instead of resurrecting the invoice."""
    created = await xapi.checkout()
    reference = created["xendit_invoice"]
    paid = fake.pay(reference, payment_id="pay-race-1")

    canceled = await xapi.platform("cancel", invoice_id=created["invoice"])

    assert canceled == {"message": "INVOICE CANCELED"}
    assert fake.invoices[reference]["status"] == "PAID"
    callback = {
        **{key: paid[key] for key in ("id", "external_id", "status", "amount", "paid_amount")},
        **{key: paid[key] for key in ("paid_at", "payment_method", "payment_channel")},
        "payment_id": "pay-race-1",
    }
    response = await xapi.client.post(
        "/callback/xendit/invoice",
        json=callback,
        headers={"x-callback-token": xapi.config.callback_token},
    )
    assert (response.status, await response.json()) == (200, {"message": "CREDITED"})
    assert (await xapi.detail(created["invoice"]))["status"] == "CANCELED"
    assert (await xapi.balance("usernew1"))["balance"] == TOTAL
    await xapi.assert_balanced()


# -- logs ------------------------------------------------------------------------------------


async def test_logs_never_carry_the_secret_key(xapi: Api, fake: FakeXendit) -> None:
    """Checkouts that work, fail or are refused, and cancels with Xendit down: the gateway
    errors are logged, and no line holds the secret key or its Basic credentials."""
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        created = await xapi.checkout()
        fake.fail_next(XENDIT_ATTEMPTS, status=503)
        await xapi.checkout(expect=502)
        fake.fail_next(1, status=401)
        await xapi.checkout(expect=502)
        fake.down = True
        await xapi.checkout(source="QRIS", expect=502)
        await xapi.platform("cancel", invoice_id=created["invoice"])

    assert any(event["event"] == "gateway error" for event in logs)
    assert any(event["event"] == "xendit call failed" for event in logs)
    credentials = base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
    for event in logs:
        text = repr(event)
        assert SECRET_KEY not in text, text
        assert credentials not in text, text
