"""POST /invoice/mark-paid end to end: a PENDING invoice paid out of band becomes PAID as if the
gateway had paid it (channel MANUAL, the total from ``external:manual`` into escrow, the
gateway's invoice expired); who may do it; the documented 400 of every other state; a malformed
body; done and cancel afterwards; a gateway payment afterwards credited to the buyer once; the
actor, reference and reason in the history, the status history and the CLI's timeline.

After every refused request nothing has changed (the log's head, the ledger, the invoice), and
the ledger sums to zero after every step checked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app, make_gateway
from service.config import Config
from service.gateway.port import GatewayUnavailable
from service.gateway.sandbox import SandboxGateway
from service.http import schemas
from service.http.keys import GATEWAY, STORE
from tests.e2e.conftest import Api, AppFactory, FakeClock, statuses
from tests.e2e.test_callbacks import event_types, paid_body, send
from tests.e2e.test_platform_actions import (
    ALREADY_CANCELED,
    BAD_CREDENTIALS,
    BUYER,
    EXPIRED,
    FORBIDDEN,
    INVOICE_NOT_FOUND,
    TTL,
    head,
    paid_invoice,
    refund,
    slow_refunds_api,
    snapshot,
    wait_for_transaction,
)
from tests.e2e.test_reconcile import pay_without_callback, reconcile
from tests.integration.cli import run_cli
from tests.sqlviews import views_query

pytestmark = pytest.mark.backends("sqlite", "postgresql")

TOTAL = 40200  # the default two-store checkout
MARKED = {"message": "INVOICE MARKED AS PAID"}
ALREADY_PAID = ("INVOICE IS ALREADY PAID", "INVOICE_ALREADY_PAID")
REFERENCE = "BCA-TRF-20260301-0042"
REASON = "Bank transfer to the marketplace's account, confirmed by finance"


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock, starting now: ``as_of`` is compared with the store's commit times
    (as in tests/e2e/test_history.py)."""
    return FakeClock(datetime.now(UTC))


# -- helpers ---------------------------------------------------------------------------------


async def mark_paid(
    api: Api,
    invoice: str,
    *,
    expect: int = 200,
    account: str = "onmarket",
    platform: str = "ONMARKET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """POST /invoice/mark-paid; ``body`` replaces the whole body, ``fields`` change its fields."""
    sent = (
        body
        if body is not None
        else {
            "platform": platform,
            "invoice_id": invoice,
            "reference": REFERENCE,
            "reason": REASON,
            **fields,
        }
    )
    response = await api.client.post(
        "/invoice/mark-paid",
        json=sent,
        headers=headers if headers is not None else api.basic(account),
    )
    answer: dict[str, Any] = await response.json()
    assert response.status == expect, answer
    if expect == 200:
        assert schemas.MarkPaidAnswer().validate(answer) == {}
    return answer


async def refused_mark_paid(
    api: Api, invoice: str, answer: tuple[str, str], *, status: int = 400, **options: Any
) -> dict[str, Any]:
    """The mark-paid is refused with exactly ``answer`` (message, code) and changes nothing."""
    shown = await _shown(api, invoice)
    before = (await head(api), await api.accounts(), shown)
    got = await mark_paid(api, invoice, expect=status, **options)
    assert (got["message"], got["code"]) == answer, got
    assert (await head(api), await api.accounts(), await _shown(api, invoice)) == before
    await api.assert_balanced()
    return got


async def _shown(api: Api, invoice: str) -> dict[str, Any] | None:
    """The invoice's detail (as its buyer sees it), or None when there is no such invoice."""
    response = await api.client.get(
        "/invoice/detail", params={"invoice": invoice}, headers=api.bearer(BUYER)
    )
    return await response.json() if response.status == 200 else None


async def gateway_status(api: Api, reference: str) -> str:
    assert api.client.app is not None
    return (await api.client.app[GATEWAY].status(reference)).status


async def marked_event(api: Api, invoice: str) -> dict[str, Any]:
    """The data of the invoice's one InvoiceMarkedPaid, with its actor."""
    assert api.client.app is not None
    found = [
        {**event.data, "actor": event.metadata["actor"]}
        async for event in api.client.app[STORE].read_stream(f"invoice-{invoice}")
        if event.type == "InvoiceMarkedPaid"
    ]
    assert len(found) == 1, found
    return found[0]


# -- success ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("account", "platform"), [("onmarket", "ONMARKET"), ("admin", "ONMARKET")])
async def test_a_pending_invoice_marked_paid_is_paid_through_the_manual_channel(
    api: Api, account: str, platform: str
) -> None:
    """The invoice's platform or an admin: PAID with every store, the total moved from
    external:manual into escrow, the gateway invoice expired, the event names who, reference,
    reason and channel MANUAL."""
    created = await api.checkout()
    invoice = created["invoice"]

    assert await mark_paid(api, invoice, account=account, platform=platform) == MARKED

    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await api.accounts() == {"external:manual": -TOTAL, f"escrow:{invoice}": TOTAL}
    await api.assert_balanced()
    assert await gateway_status(api, created["xendit_invoice"]) == "EXPIRED"
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoiceMarkedPaid"]
    event = await marked_event(api, invoice)
    assert event == {
        "invoice": invoice,
        "amount": TOTAL,
        "source": "XENDIT",
        "channel": "MANUAL",
        "reference": REFERENCE,
        "reason": REASON,
        "marked_by": account,
        "paid_at": event["paid_at"],
        "actor": account,
    }


async def test_the_longest_reference_and_reason_are_kept_whole(api: Api) -> None:
    """255 and 500 characters, any text (not only ASCII): taken, and recorded as given."""
    invoice = (await api.checkout())["invoice"]
    reference, reason = "R" * 254 + "é", "“" + "x" * 498 + "”"

    assert await mark_paid(api, invoice, reference=reference, reason=reason) == MARKED

    event = await marked_event(api, invoice)
    assert (event["reference"], event["reason"]) == (reference, reason)


async def test_a_gateway_that_fails_to_expire_does_not_undo_the_mark_paid(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """As after a cancel: the mark-paid is committed and answered whatever the gateway says."""

    class ExpiryFails(SandboxGateway):
        async def expire(self, reference: str) -> None:
            raise GatewayUnavailable("the gateway is down")

    sandbox = make_gateway(config)
    assert isinstance(sandbox, SandboxGateway)
    gateway = ExpiryFails(config.public_base_url, sandbox._merchant)
    api = Api(await aiohttp_client(create_app(config, clock=clock, gateway=gateway)), config, clock)
    created = await api.checkout()

    assert await mark_paid(api, created["invoice"]) == MARKED

    assert (await api.detail(created["invoice"]))["status"] == "PAID"
    assert await gateway_status(api, created["xendit_invoice"]) == "PENDING"
    await api.assert_balanced()


# -- who may mark an invoice paid ------------------------------------------------------------


async def test_other_accounts_and_platforms_are_forbidden(api: Api) -> None:
    """Another platform, a body platform not the account's, a buyer or seller with Basic
    credentials, an admin naming another service than the invoice's: 403, nothing changes."""
    invoice = (await api.checkout())["invoice"]
    for account, platform in [
        ("ondelivery", "ONDELIVERY"),  # another platform's account, its own platform
        ("ondelivery", "ONMARKET"),  # ... naming the invoice's platform
        ("onmarket", "ONDELIVERY"),  # the invoice's platform naming another
        (BUYER, "ONMARKET"),
        ("seller1", "ONMARKET"),
        ("admin", "ONDELIVERY"),  # an admin, but not the invoice's service
    ]:
        await refused_mark_paid(
            api, invoice, FORBIDDEN, status=403, account=account, platform=platform
        )
    assert (await api.detail(invoice))["status"] == "PENDING"


async def test_another_services_invoice_is_refused_alike_whether_it_exists_or_not(
    api: Api,
) -> None:
    """ONDELIVERY learns nothing about which ONMARKET invoices exist: the same 403 as done."""
    invoice = (await api.checkout())["invoice"]
    answers = [
        await mark_paid(api, name, expect=403, account="ondelivery", platform="ONDELIVERY")
        for name in (invoice, "OM0000000000000")
    ]
    assert answers[0] == answers[1]
    assert (answers[0]["message"], answers[0]["code"]) == FORBIDDEN


async def test_bad_credentials_and_a_buyer_token_are_an_auth_error(api: Api) -> None:
    """No, malformed or wrong Basic credentials, or a Bearer token: 401 Auth Error."""
    invoice = (await api.checkout())["invoice"]
    before = await snapshot(api, invoice)
    for headers in [*BAD_CREDENTIALS, api.bearer(BUYER), api.bearer("onmarket")]:
        answer = await mark_paid(api, invoice, expect=401, headers=headers)
        assert answer == {"message": "Auth Error", "code": "AUTH_ERROR"}, headers
    assert await snapshot(api, invoice) == before


async def test_an_unknown_invoice_is_not_found(api: Api) -> None:
    await refused_mark_paid(api, "OM9999999999999", INVOICE_NOT_FOUND)
    await refused_mark_paid(api, "OM9999999999999", INVOICE_NOT_FOUND, account="admin")


# -- every state but PENDING -----------------------------------------------------------------


async def test_every_state_after_payment_is_already_paid(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Paid by the gateway, marked paid (a retry after success), a store completed, every store
    completed, a refund in process, every store refunded: 400 INVOICE IS ALREADY PAID."""
    api = await slow_refunds_api(aiohttp_client, config, clock)
    by_gateway = await paid_invoice(api)
    marked = (await api.checkout())["invoice"]
    await mark_paid(api, marked)
    one_completed = await paid_invoice(api)
    await api.platform("done", **_store(one_completed, 0))
    completed = await paid_invoice(api, stores=1)
    await api.platform("done", **_store(completed, 0))
    refunding = await paid_invoice(api, stores=1)
    await refund(api, refunding["invoice"], refunding["transaction"][0])

    for invoice in (by_gateway["invoice"], marked, one_completed["invoice"]):
        await refused_mark_paid(api, invoice, ALREADY_PAID)
    assert (await api.detail(completed["invoice"]))["status"] == "COMPLETED"
    await refused_mark_paid(api, completed["invoice"], ALREADY_PAID)
    assert statuses(await api.detail(refunding["invoice"])) == ("PAID", ["REFUND_IN_PROCESS"])
    await refused_mark_paid(api, refunding["invoice"], ALREADY_PAID, account="admin")


async def test_a_refunded_invoice_is_already_paid(api: Api) -> None:
    """Every store refunded (REFUNDED): still a paid invoice, not one to mark paid."""
    detail = await paid_invoice(api, stores=1)
    invoice = detail["invoice"]
    await refund(api, invoice, detail["transaction"][0])
    await wait_for_transaction(api, invoice, 0, "REFUNDED")
    assert (await api.detail(invoice))["status"] == "REFUNDED"

    await refused_mark_paid(api, invoice, ALREADY_PAID)


async def test_a_canceled_invoice_is_already_canceled(api: Api) -> None:
    invoice = (await api.checkout())["invoice"]
    await api.platform("cancel", invoice_id=invoice)

    await refused_mark_paid(api, invoice, ALREADY_CANCELED)
    await refused_mark_paid(api, invoice, ALREADY_CANCELED, account="admin")


async def test_an_expired_invoice_is_expired(api: Api, clock: FakeClock) -> None:
    """Expired and recorded by the expiry task: 400 EXPIRED INVOICE."""
    invoice = (await api.checkout())["invoice"]
    clock.advance(TTL + 1)
    await api.wait_until_expired_in_view(invoice)

    await refused_mark_paid(api, invoice, EXPIRED)


async def test_an_invoice_past_its_expiry_is_expired_before_the_task_records_it(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Time is the truth: past expired_at, with no InvoiceExpired written yet, still EXPIRED."""
    idle = dataclasses.replace(config, expiry_interval_seconds=3600)
    api = Api(await aiohttp_client(create_app(idle, clock=clock)), idle, clock)
    invoice = (await api.checkout())["invoice"]
    clock.advance(TTL)  # exactly at expired_at

    await refused_mark_paid(api, invoice, EXPIRED)

    assert await event_types(api, invoice) == ["InvoiceCreated"]
    assert await _view_status(api, invoice) == "PENDING"  # the expiry is not recorded yet


# -- a malformed body ------------------------------------------------------------------------


BAD_FIELDS: list[tuple[str, Any]] = [
    ("reference", ""),
    ("reference", "R" * 256),
    ("reference", 42),
    ("reference", None),
    ("reference", ["BCA-1"]),
    ("reason", ""),
    ("reason", "x" * 501),
    ("reason", True),
    ("reason", None),
    ("reason", {"text": "paid"}),
    ("platform", "NOWHERE"),
    ("platform", None),
    ("invoice_id", ""),
    ("invoice_id", 12),
]


async def test_each_bad_field_is_a_validation_error_naming_it(api: Api) -> None:
    """Missing, empty, too long or of the wrong type: 400 VALIDATION naming the field."""
    invoice = (await api.checkout())["invoice"]
    good = {"platform": "ONMARKET", "invoice_id": invoice, "reference": "R", "reason": "r"}
    cases: list[tuple[str, dict[str, Any]]] = [
        (name, {key: value for key, value in good.items() if key != name}) for name in good
    ]
    cases += [(name, {**good, name: value}) for name, value in BAD_FIELDS]
    cases.append(("note", {**good, "note": "unknown"}))
    before = await snapshot(api, invoice)
    for name, body in cases:
        answer = await mark_paid(api, invoice, expect=400, body=body)
        assert (answer["message"], answer["code"]) == ("Invalid JSON Format", "VALIDATION")
        assert list(answer["errors"]) == [name], (body, answer)
    not_objects: list[Any] = [[], "mark it paid", 7]
    for not_an_object in not_objects:
        answer = await mark_paid(api, invoice, expect=400, body=not_an_object)
        assert answer["code"] == "VALIDATION"
    assert await snapshot(api, invoice) == before
    await api.assert_balanced()


# -- afterwards ------------------------------------------------------------------------------


async def test_done_after_mark_paid_pays_the_sellers_out_of_escrow(api: Api) -> None:
    created = await api.checkout()
    invoice = created["invoice"]
    await mark_paid(api, invoice)
    detail = await api.detail(invoice)

    for index in (0, 1):
        assert await api.platform("done", **_store(detail, index)) == {
            "message": "TRANSACTION IS COMPLETED"
        }

    assert statuses(await api.detail(invoice)) == ("COMPLETED", ["COMPLETED", "COMPLETED"])
    accounts = await api.accounts()
    assert f"escrow:{invoice}" not in accounts
    assert accounts["external:manual"] == -TOTAL
    assert accounts["seller:seller1"] == 10000 + 5000 - 1000
    assert accounts["seller:seller2"] == 20000 + 5000 - 1000
    assert accounts["platform:ONMARKET:commission"] == 2000
    assert accounts["platform:ONMARKET:insurance"] == 200
    await api.assert_balanced()


async def test_cancel_after_mark_paid_refunds_to_the_buyers_balance(api: Api) -> None:
    """The only undo: cancel each store by refund; the buyer's balance gets the total."""
    invoice = (await api.checkout())["invoice"]
    await mark_paid(api, invoice)
    detail = await api.detail(invoice)
    assert (await api.platform("cancel", invoice_id=invoice, expect=400))["code"] == (
        "VALIDATION"  # a paid invoice is canceled store by store, as any paid one
    )

    for index in (0, 1):
        assert await refund(api, invoice, detail["transaction"][index]) == {
            "message": "REFUND IN PROCESS"
        }
        await wait_for_transaction(api, invoice, index, "REFUNDED")

    assert (await api.detail(invoice))["status"] == "REFUNDED"
    assert (await api.balance(BUYER))["balance"] == TOTAL
    assert await api.accounts() == {"external:manual": -TOTAL, f"buyer:{BUYER}": TOTAL}
    await api.assert_balanced()


async def test_a_gateway_payment_after_mark_paid_is_credited_to_the_buyer_once(api: Api) -> None:
    """The buyer paid at the gateway too (the sandbox's Pay, then the same callback again):
    credited to the buyer's balance once as a late payment; the invoice stays PAID, its total
    stays in escrow; never a second PAID."""
    created = await api.checkout()
    invoice = created["invoice"]
    await mark_paid(api, invoice)

    paid = await api.pay(created["xendit_invoice"], payment_id="after-manual")
    again = await send(api, paid_body(invoice, payment_id="after-manual"))

    assert paid["callback"] == {"status": 200, "body": {"message": "CREDITED"}}
    assert again == (200, {"message": "DUPLICATE"})
    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await event_types(api, invoice) == [
        "InvoiceCreated",
        "InvoiceMarkedPaid",
        "LatePaymentReceived",
    ]
    assert (await api.balance(BUYER))["balance"] == TOTAL
    assert await api.accounts() == {
        "external:manual": -TOTAL,
        f"escrow:{invoice}": TOTAL,
        "gateway:xendit": -TOTAL,
        f"buyer:{BUYER}": TOTAL,
    }
    await api.assert_balanced()


async def test_a_gateway_payment_whose_callback_was_lost_is_found_by_reconcile(
    api: Api,
) -> None:
    """The buyer paid at the gateway (its callback lost) and the platform marked the invoice
    paid too: reconciliation asks the gateway about marked invoices, and credits the buyer
    once; afterwards the invoice is no longer asked about."""
    created = await api.checkout()
    invoice = created["invoice"]
    await pay_without_callback(api, created["xendit_invoice"])
    await mark_paid(api, invoice)

    assert await reconcile(api) == Counter({"credited": 1})

    assert (await api.detail(invoice))["status"] == "PAID"
    assert (await api.balance(BUYER))["balance"] == TOTAL
    assert (await api.accounts())[f"escrow:{invoice}"] == TOTAL
    await api.assert_balanced()
    assert await reconcile(api) == Counter()


async def test_reconcile_asks_about_marked_invoices_only_among_the_paid(api: Api) -> None:
    """A marked invoice with no gateway payment is asked about (the gateway expired it: nothing
    changes); one paid through the gateway is not."""
    await paid_invoice(api)
    marked = (await api.checkout())["invoice"]
    await mark_paid(api, marked)
    position = await head(api)

    assert await reconcile(api) == Counter({"unchanged": 1})

    assert await head(api) == position


# -- the history -----------------------------------------------------------------------------


async def test_the_history_and_status_history_show_who_marked_it_paid(api: Api) -> None:
    """/invoice/history: the InvoiceMarkedPaid with its actor, reference and reason;
    status_history: PAID by that account; as of the checkout's position: PENDING."""
    invoice = (await api.checkout())["invoice"]
    await mark_paid(api, invoice, account="admin")

    response = await api.client.get(
        "/invoice/history", params={"invoice": invoice}, headers=api.bearer(BUYER)
    )
    history = await response.json()
    assert response.status == 200, history
    assert schemas.HistoryAnswer().validate(history) == {}
    created, marked = history["events"]
    assert (marked["type"], marked["actor"]) == ("InvoiceMarkedPaid", "admin")
    assert (marked["data"]["reference"], marked["data"]["reason"]) == (REFERENCE, REASON)
    assert marked["data"]["channel"] == "MANUAL"
    detail = await api.detail(invoice)
    assert [(entry["status"], entry["actor"]) for entry in detail["status_history"]] == [
        ("PENDING", BUYER),
        ("PAID", "admin"),
    ]
    response = await api.client.get(
        "/invoice/detail",
        params={"invoice": invoice, "as_of_position": str(created["position"])},
        headers=api.bearer(BUYER),
    )
    before = await response.json()
    assert (before["status"], len(before["status_history"])) == ("PENDING", 1)


async def test_the_cli_history_shows_the_reference_and_reason(api: Api, tmp_path: Path) -> None:
    """``python -m service history``: the mark-paid's line names its actor, reference and
    reason (quoted, so that what a caller wrote cannot drive the operator's terminal)."""
    invoice = (await api.checkout())["invoice"]
    await mark_paid(api, invoice, reference="BCA-7", reason="paid\x1b[2J at the counter")

    result = await asyncio.to_thread(
        run_cli, tmp_path, "--db", api.config.database, "history", invoice
    )

    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[-1]
    assert "InvoiceMarkedPaid" in line
    assert "by onmarket" in line
    assert "amount 40,200" in line
    assert 'reference "BCA-7", reason "paid\\u001b[2J at the counter"' in line
    assert "\x1b" not in result.stdout


# -- small helpers ---------------------------------------------------------------------------


def _store(detail: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "invoice_id": detail["invoice"],
        "invoice_onmarket": detail["transaction"][index]["invoice_onmarket"],
    }


async def _view_status(api: Api, invoice: str) -> str:
    assert api.client.app is not None
    rows = await views_query(
        api.client.app[STORE], "SELECT status FROM invoice_view WHERE invoice = ?", (invoice,)
    )
    return str(rows[0][0])


async def test_the_openapi_document_lists_mark_paid_and_its_codes(api: Api) -> None:
    """Documented (and so fuzzed), with each status's codes as an enum."""
    response = await api.client.get("/openapi.json")
    operation = (await response.json())["paths"]["/invoice/mark-paid"]["post"]
    enums = {
        status: set(answer["content"]["application/json"]["schema"]["properties"]["code"]["enum"])
        for status, answer in operation["responses"].items()
        if status != "200"
    }
    assert enums["400"] == {
        "VALIDATION",
        "MALFORMED_JSON",
        "INVOICE_NOT_FOUND",
        "TRANSACTION_ALREADY_CANCELED",
        "INVOICE_EXPIRED",
        "INVOICE_ALREADY_PAID",
    }
    assert enums["403"] == {"FORBIDDEN"}
    assert enums["401"] == {"AUTH_ERROR"}
