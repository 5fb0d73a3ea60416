"""Audit over HTTP: ``GET /invoice/history`` and ``GET /invoice/detail`` as of a past point.

Every state an invoice can pass through is driven through the real app: paid then one store
completed and the other refunded, canceled, expired (and paid late), and paid at once from the
balance. For each, the history lists the invoice's events in order with who caused them and in
which request, and the detail replayed as of each event's position answers the status the
invoice had then, ending equal to the live detail.

The store stamps each event with the wall clock's commit time (``recorded_at``), and ``as_of``
is compared with it, while the app's decisions read the test's ``FakeClock``. So this module's
clock starts at the real present: a past point is then rendered at a time the domain agrees
with (a clock left in the past would put every "now" before or after ``expired_at`` at random).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app, utc_now
from service.config import Config
from service.http import schemas
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body, statuses

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "usernew1"
TTL = 2 * 3600
NOT_FOUND = {"message": "Invoice not found", "code": "INVOICE_NOT_FOUND"}
API_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")

Statuses = tuple[str, list[str]]


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock, starting now (see the module's docstring)."""
    return FakeClock(datetime.now(UTC))


# -- helpers ---------------------------------------------------------------------------------


async def send(
    api: Api,
    method: str,
    path: str,
    *,
    expect: int = 200,
    request_id: str | None = None,
    **options: Any,
) -> tuple[dict[str, Any], str]:
    """One request, optionally with an X-Request-ID; its JSON body and its answered request id."""
    headers: dict[str, str] = options.pop("headers", {})
    if request_id is not None:
        headers = {**headers, "X-Request-ID": request_id}
    response = await api.client.request(method, path, headers=headers, **options)
    body: dict[str, Any] = await response.json()
    assert response.status == expect, (path, body)
    return body, response.headers["X-Request-ID"]


async def checkout(
    api: Api, request_id: str | None = None, buyer: str = BUYER, **overrides: Any
) -> tuple[dict[str, Any], str]:
    return await send(
        api,
        "POST",
        "/payment-checkout",
        request_id=request_id,
        json=checkout_body(**overrides),
        headers=api.bearer(buyer),
    )


async def pay(
    api: Api, invoice: str, amount: int, payment_id: str, request_id: str | None = None
) -> tuple[dict[str, Any], str]:
    """The gateway's PAID callback, sent as the gateway sends it."""
    callback = {
        "id": payment_id,
        "external_id": invoice,
        "status": "PAID",
        "amount": amount,
        "paid_amount": amount,
        "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA",
    }
    return await send(
        api,
        "POST",
        "/callback/xendit/invoice",
        request_id=request_id,
        data=orjson.dumps(callback),
        headers={"Content-Type": "application/json", "x-callback-token": api.config.callback_token},
    )


async def platform(
    api: Api, action: str, request_id: str | None = None, **body: Any
) -> tuple[dict[str, Any], str]:
    return await send(
        api,
        "POST",
        f"/invoice/{action}",
        request_id=request_id,
        json={"platform": "ONMARKET", **body},
        headers=api.basic("onmarket"),
    )


async def history(api: Api, invoice: str, viewer: str = BUYER, expect: int = 200) -> dict[str, Any]:
    """The invoice's history; a 200 answer is checked against its schema and its format."""
    body, _ = await send(
        api,
        "GET",
        "/invoice/history",
        expect=expect,
        params={"invoice": invoice},
        headers=api.bearer(viewer),
    )
    if expect == 200:
        assert schemas.HistoryAnswer().validate(body) == {}
        assert body["invoice"] == invoice
        events = body["events"]
        assert [e["version"] for e in events] == list(range(1, len(events) + 1))
        positions = [e["position"] for e in events]
        assert positions == sorted(set(positions)), positions
        assert all(API_TIME.match(e["recorded_at"]) for e in events), events
        times = [e["recorded_at"] for e in events]
        assert times == sorted(times), times
    return body


async def detail_as_of(
    api: Api, invoice: str, viewer: str = BUYER, expect: int = 200, **point: Any
) -> dict[str, Any]:
    body, _ = await send(
        api,
        "GET",
        "/invoice/detail",
        expect=expect,
        params={"invoice": invoice, **{key: str(value) for key, value in point.items()}},
        headers=api.bearer(viewer),
    )
    if expect == 200:
        assert schemas.DetailAnswer().validate(body) == {}
    return body


def timeline(body: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """Each event's (type, actor, request_id)."""
    return [(e["type"], e["actor"], e["request_id"]) for e in body["events"]]


async def statuses_at_each_event(api: Api, body: dict[str, Any]) -> list[Statuses]:
    """The detail as of each event's position: the invoice's and its transactions' statuses."""
    invoice = body["invoice"]
    return [
        statuses(await detail_as_of(api, invoice, as_of_position=event["position"]))
        for event in body["events"]
    ]


async def assert_replay_ends_live(api: Api, body: dict[str, Any]) -> None:
    """At the last event's position, and at any later one, the detail equals the live one."""
    invoice, last = body["invoice"], body["events"][-1]["position"]
    live = await api.detail(invoice)
    assert await detail_as_of(api, invoice, as_of_position=last) == live
    assert await detail_as_of(api, invoice, as_of_position=10**9) == live


def shifted(api_time: str, milliseconds: int) -> str:
    """An answer's time moved by ``milliseconds``, in the same format."""
    moment = datetime.fromisoformat(api_time) + timedelta(milliseconds=milliseconds)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def wait_for_status(api: Api, invoice: str, status: str, within: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (await api.detail(invoice))["status"] != status:
        assert loop.time() < deadline, f"{invoice} never became {status}"
        await asyncio.sleep(0.01)


# -- every state an invoice passes through ---------------------------------------------------


async def test_history_of_a_paid_invoice_completed_and_refunded_store_by_store(api: Api) -> None:
    """Paid, one store completed, the other refunded: every event, actor, id and past state."""
    created, _ = await checkout(api, request_id="req-checkout")
    invoice = created["invoice"]
    first, second = (line["invoice_onmarket"] for line in created["transaction"])
    total = 40200
    await pay(api, invoice, total, "pay-1", request_id="req-pay")
    await platform(api, "done", request_id="req-done", invoice_id=invoice, invoice_onmarket=first)
    answer, _ = await platform(
        api,
        "cancel",
        request_id="req-refund",
        invoice_id=invoice,
        invoice_onmarket=second,
        buyer_username=BUYER,
    )
    assert answer == {"message": "REFUND IN PROCESS"}
    await wait_for_status(api, invoice, "COMPLETED")

    body = await history(api, invoice)
    assert timeline(body) == [
        ("InvoiceCreated", BUYER, "req-checkout"),
        ("InvoicePaid", "gateway", "req-pay"),
        ("TransactionCompleted", "onmarket", "req-done"),
        ("RefundRequested", "onmarket", "req-refund"),
        # The worker acts for the request that asked for the refund.
        ("RefundCompleted", "system:refund-worker", "req-refund"),
    ]
    data = [event["data"] for event in body["events"]]
    assert data[0]["invoice"] == invoice
    assert data[0]["username"] == BUYER
    assert data[0]["total_amount"] == total
    assert [line["invoice_onmarket"] for line in data[0]["transactions"]] == [first, second]
    assert (data[1]["amount"], data[1]["payment_id"]) == (total, "pay-1")
    assert (data[2]["invoice_onmarket"], data[2]["completed_by"]) == (first, "onmarket")
    assert data[2]["seller_amount"] + data[2]["commission"] + data[2]["insurance"] == 15100
    assert (data[3]["invoice_onmarket"], data[3]["amount"]) == (second, 25100)
    assert (data[4]["invoice_onmarket"], data[4]["amount"]) == (second, 25100)

    assert await statuses_at_each_event(api, body) == [
        ("PENDING", ["PENDING", "PENDING"]),
        ("PAID", ["PAID", "PAID"]),
        ("PAID", ["COMPLETED", "PAID"]),
        ("PAID", ["COMPLETED", "REFUND_IN_PROCESS"]),
        ("COMPLETED", ["COMPLETED", "REFUNDED"]),
    ]
    await assert_replay_ends_live(api, body)


async def test_every_position_between_events_shows_the_last_event_before_it(api: Api) -> None:
    """A position between the invoice's events answers its state after the last one before."""
    created, _ = await checkout(api, stores=1)
    invoice = created["invoice"]
    await api.top_up(BUYER, 5)  # another stream's event between the invoice's
    await pay(api, invoice, 15100, "pay-between")
    await platform(api, "done", invoice_id=invoice)

    events = (await history(api, invoice))["events"]
    first, last = events[0]["position"], events[-1]["position"]
    assert last - first > len(events) - 1, "no other event lies between the invoice's"
    status_after = {
        "InvoiceCreated": "PENDING",
        "InvoicePaid": "PAID",
        "TransactionCompleted": "COMPLETED",
    }
    type_at = {event["position"]: event["type"] for event in events}
    expected, current = [], ""
    for position in range(first, last + 1):
        current = status_after[type_at[position]] if position in type_at else current
        expected.append(current)
    answered = [
        (await detail_as_of(api, invoice, as_of_position=position))["status"]
        for position in range(first, last + 1)
    ]
    assert answered == expected


async def test_history_of_a_canceled_invoice(api: Api) -> None:
    """PENDING then CANCELED by the platform; canceled with the request's id."""
    created, _ = await checkout(api, request_id="req-new")
    invoice = created["invoice"]
    answer, _ = await platform(api, "cancel", request_id="req-cancel", invoice_id=invoice)
    assert answer == {"message": "INVOICE CANCELED"}

    body = await history(api, invoice)
    assert timeline(body) == [
        ("InvoiceCreated", BUYER, "req-new"),
        ("InvoiceCanceled", "onmarket", "req-cancel"),
    ]
    assert body["events"][1]["data"]["canceled_by"] == "onmarket"
    assert await statuses_at_each_event(api, body) == [
        ("PENDING", ["PENDING", "PENDING"]),
        ("CANCELED", ["CANCELED", "CANCELED"]),
    ]
    await assert_replay_ends_live(api, body)


async def test_history_of_an_expired_invoice_then_paid_late(api: Api, clock: FakeClock) -> None:
    """Expired by the task (no request id), then paid late: the invoice stays EXPIRED."""
    created, _ = await checkout(api, request_id="req-soon-expired")
    invoice = created["invoice"]
    clock.advance(TTL + 1)
    await api.wait_until_expired_in_view(invoice)
    await pay(api, invoice, 40200, "pay-late", request_id="req-late")

    body = await history(api, invoice)
    assert timeline(body) == [
        ("InvoiceCreated", BUYER, "req-soon-expired"),
        ("InvoiceExpired", "system:expiry", None),
        ("LatePaymentReceived", "gateway", "req-late"),
    ]
    late = body["events"][2]["data"]
    assert (late["invoice_status"], late["amount"], late["payment_id"]) == (
        "EXPIRED",
        40200,
        "pay-late",
    )
    assert await statuses_at_each_event(api, body) == [
        ("PENDING", ["PENDING", "PENDING"]),
        ("EXPIRED", ["EXPIRED", "EXPIRED"]),
        ("EXPIRED", ["EXPIRED", "EXPIRED"]),
    ]
    await assert_replay_ends_live(api, body)
    await api.assert_balanced()


async def test_history_of_a_payment_of_the_wrong_amount_then_the_right_one(api: Api) -> None:
    """The wrong amount is in the history with both amounts; the invoice stays PENDING through
    it, and the right amount after it pays."""
    created, _ = await checkout(api, request_id="req-order")
    invoice = created["invoice"]
    await pay(api, invoice, 40000, "pay-wrong", request_id="req-wrong")
    await pay(api, invoice, 40200, "pay-right", request_id="req-right")

    body = await history(api, invoice)
    assert timeline(body) == [
        ("InvoiceCreated", BUYER, "req-order"),
        ("MismatchedPaymentReceived", "gateway", "req-wrong"),
        ("InvoicePaid", "gateway", "req-right"),
    ]
    wrong = body["events"][1]["data"]
    assert (wrong["amount"], wrong["expected"], wrong["payment_id"]) == (40000, 40200, "pay-wrong")
    assert await statuses_at_each_event(api, body) == [
        ("PENDING", ["PENDING", "PENDING"]),
        ("PENDING", ["PENDING", "PENDING"]),
        ("PAID", ["PAID", "PAID"]),
    ]
    await assert_replay_ends_live(api, body)
    await api.assert_balanced()


async def test_history_of_a_balance_checkout_paid_at_once(api: Api) -> None:
    """Created and paid in one request and one commit: both events by the buyer, with its id."""
    await api.top_up(BUYER, 100_000)
    created, _ = await checkout(api, request_id="req-balance", source="BALANCE", stores=1)
    invoice = created["invoice"]

    body = await history(api, invoice)
    assert timeline(body) == [
        ("InvoiceCreated", BUYER, "req-balance"),
        ("InvoicePaid", BUYER, "req-balance"),
    ]
    created_event, paid_event = body["events"]
    assert paid_event["position"] == created_event["position"] + 1
    assert paid_event["recorded_at"] == created_event["recorded_at"]  # one commit
    assert paid_event["data"]["source"] == "BALANCE"
    # As of each position (the log's own order within the commit) ...
    assert await statuses_at_each_event(api, body) == [("PENDING", ["PENDING"]), ("PAID", ["PAID"])]
    # ... but as of its commit's time it was already paid: it was never seen PENDING.
    just_after = shifted(created_event["recorded_at"], 1)
    assert statuses(await detail_as_of(api, invoice, as_of=just_after)) == ("PAID", ["PAID"])
    await assert_replay_ends_live(api, body)


async def test_sandbox_payments_are_recorded_by_the_gateway_in_its_own_request(api: Api) -> None:
    """A sandbox payment is the gateway's, in the callback's own request (not the button's)."""
    created, _ = await checkout(api)
    answer, button_request = await send(
        api, "POST", f"/sandbox/invoices/{created['xendit_invoice']}/pay", json={}
    )
    assert answer["callback"]["status"] == 200
    _, paid = (await history(api, created["invoice"]))["events"]
    assert (paid["type"], paid["actor"]) == ("InvoicePaid", "gateway")
    assert GENERATED_REQUEST_ID.match(paid["request_id"])
    assert paid["request_id"] != button_request


async def test_a_request_without_an_id_is_recorded_with_the_id_it_was_answered_with(
    api: Api,
) -> None:
    """No X-Request-ID sent: the event carries the generated one the answer's header names."""
    created, answered_id = await checkout(api)
    (event,) = (await history(api, created["invoice"]))["events"]
    assert GENERATED_REQUEST_ID.match(answered_id)
    assert event["request_id"] == answered_id


# -- as_of: a point in time ------------------------------------------------------------------


async def test_as_of_a_time_answers_the_invoice_as_it_stood_then(api: Api) -> None:
    """Just after each commit the detail shows it, just before it does not; earlier: not found."""
    created, _ = await checkout(api, stores=1)
    invoice = created["invoice"]
    await asyncio.sleep(0.01)
    await pay(api, invoice, 15100, "pay-as-of")
    await asyncio.sleep(0.01)
    await platform(api, "done", invoice_id=invoice)

    body = await history(api, invoice)
    times = [event["recorded_at"] for event in body["events"]]
    gaps = [
        datetime.fromisoformat(b) - datetime.fromisoformat(a) for a, b in itertools.pairwise(times)
    ]
    assert all(gap >= timedelta(milliseconds=5) for gap in gaps), times

    after = [
        statuses(await detail_as_of(api, invoice, as_of=shifted(moment, 1))) for moment in times
    ]
    assert after == [("PENDING", ["PENDING"]), ("PAID", ["PAID"]), ("COMPLETED", ["COMPLETED"])]
    before = [
        statuses(await detail_as_of(api, invoice, as_of=shifted(moment, -1)))
        for moment in times[1:]
    ]
    assert before == [("PENDING", ["PENDING"]), ("PAID", ["PAID"])]

    too_early = shifted(times[0], -1)
    assert await detail_as_of(api, invoice, expect=400, as_of=too_early) == NOT_FOUND
    a_year_ago = shifted(times[0], -365 * 24 * 3600 * 1000)
    assert await detail_as_of(api, invoice, expect=400, as_of=a_year_ago) == NOT_FOUND
    live = await api.detail(invoice)
    assert await detail_as_of(api, invoice, as_of=shifted(times[-1], 1)) == live
    # The same instant in another offset is the same point.
    paid_at = datetime.fromisoformat(shifted(times[1], 1)).astimezone(timezone(timedelta(hours=7)))
    in_jakarta = await detail_as_of(api, invoice, as_of=paid_at.isoformat())
    assert statuses(in_jakarta) == ("PAID", ["PAID"])


async def test_as_of_before_creation_is_not_found(api: Api) -> None:
    """A position before the invoice's InvoiceCreated, or position 0: Invoice not found."""
    await api.top_up(BUYER, 7)
    created, _ = await checkout(api)
    invoice = created["invoice"]
    (event,) = (await history(api, invoice))["events"]
    for position in (0, 1, event["position"] - 1):
        assert await detail_as_of(api, invoice, expect=400, as_of_position=position) == NOT_FOUND
    assert (await detail_as_of(api, invoice, as_of_position=event["position"]))["status"] == (
        "PENDING"
    )


async def test_as_of_by_waybill_number(api: Api) -> None:
    """The detail by waybill number replays the same way."""
    body = checkout_body(service="ONDELIVERY", stores=1)
    body["transaction"][0]["waybill_number"] = "OND-HIST-0001"
    created, _ = await send(api, "POST", "/payment-checkout", json=body, headers=api.bearer(BUYER))
    (event,) = (await history(api, created["invoice"]))["events"]
    answer, _ = await send(
        api,
        "GET",
        "/invoice/detail",
        params={"waybill_number": "OND-HIST-0001", "as_of_position": str(event["position"])},
        headers=api.bearer(BUYER),
    )
    assert answer["invoice"] == created["invoice"]
    assert answer["status"] == "PENDING"


@pytest.mark.parametrize(
    "point",
    [
        pytest.param({"as_of": "2026-01-01T00:00:00Z", "as_of_position": "3"}, id="both"),
        pytest.param({"as_of": "2026-01-01T00:00:00"}, id="as_of-without-timezone"),
        pytest.param({"as_of": "yesterday"}, id="as_of-not-a-time"),
        pytest.param({"as_of_position": "-1"}, id="negative-position"),
        pytest.param({"as_of_position": "third"}, id="position-not-a-number"),
    ],
)
async def test_a_bad_point_in_time_is_refused(api: Api, point: dict[str, str]) -> None:
    """as_of and as_of_position together, or either malformed: 400 VALIDATION."""
    created, _ = await checkout(api)
    answer = await detail_as_of(api, created["invoice"], expect=400, **point)
    assert answer["code"] == "VALIDATION", answer


# -- who may read a history ------------------------------------------------------------------


async def test_history_and_as_of_follow_the_detail_access_rules(api: Api) -> None:
    """Buyer, own platform and admin see them; others get exactly a missing invoice's answer."""
    created, _ = await checkout(api)
    invoice = created["invoice"]
    (event,) = (await history(api, invoice))["events"]
    position = event["position"]

    missing_history = await history(api, "OM0000000000000", expect=400)
    missing_detail = await detail_as_of(api, "OM0000000000000", expect=400, as_of_position=position)
    assert missing_history == missing_detail == NOT_FOUND

    for outsider in ("seller1", "ondelivery", "onticket"):
        assert await history(api, invoice, viewer=outsider, expect=400) == NOT_FOUND, outsider
        refused = await detail_as_of(
            api, invoice, viewer=outsider, expect=400, as_of_position=position
        )
        assert refused == NOT_FOUND, outsider

    own = await history(api, invoice)
    for insider in ("onmarket", "admin"):
        assert await history(api, invoice, viewer=insider) == own, insider
        seen = await detail_as_of(api, invoice, viewer=insider, as_of_position=position)
        assert seen["invoice"] == invoice, insider


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="no-invoice"),
        pytest.param({"invoice": ""}, id="empty-invoice"),
        pytest.param({"waybill_number": "OND-1"}, id="waybill-instead"),
        pytest.param({"invoice": "OM0000000000000", "as_of_position": "1"}, id="unknown-param"),
    ],
)
async def test_history_needs_exactly_an_invoice(api: Api, params: dict[str, str]) -> None:
    """Without the invoice parameter (or with another one): 400 VALIDATION."""
    answer, _ = await send(
        api, "GET", "/invoice/history", expect=400, params=params, headers=api.bearer(BUYER)
    )
    assert answer["code"] == "VALIDATION", answer


async def test_history_needs_a_token(api: Api) -> None:
    """No Authorization header: 401, as for the detail."""
    answer, _ = await send(
        api, "GET", "/invoice/history", expect=401, params={"invoice": "OM0000000000000"}
    )
    assert answer["code"] == "AUTH_ERROR"


# -- a position is a point in time too -------------------------------------------------------


async def test_as_of_a_position_renders_the_invoice_at_that_positions_time(
    aiohttp_client: AppFactory, config: Config
) -> None:
    """As of a later position, an invoice whose time ran out shows EXPIRED, like as_of its time."""
    short = dataclasses.replace(
        config,
        invoice_ttl_seconds=1,
        expiry_interval_seconds=60,  # the task's first pass runs before the checkout
    )
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(short, clock=utc_now)
    )
    api = Api(client, short, FakeClock(utc_now()))
    created, _ = await checkout(api, stores=1)
    invoice = created["invoice"]
    await asyncio.sleep(1.1)  # expired_at passes; nothing records it yet
    await api.top_up(BUYER, 1)  # a later position, committed after expired_at
    health, _ = await send(api, "GET", "/health")
    head = health["head_position"]

    (only,) = (await history(api, invoice))["events"]
    assert only["type"] == "InvoiceCreated"
    assert only["position"] < head
    assert (await api.detail(invoice))["status"] == "EXPIRED"
    now = utc_now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert (await detail_as_of(api, invoice, as_of=now))["status"] == "EXPIRED"
    by_position = await detail_as_of(api, invoice, as_of_position=head)
    assert by_position["status"] == "EXPIRED"
