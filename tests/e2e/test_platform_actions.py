"""The platforms' actions, /invoice/cancel and /invoice/done, end to end.

Every transition of the state machine the contract allows, every one it refuses with the
documented answer, where the money goes for each (double-entry, per account), who may act, a
cancel racing a done, and the refund worker crediting each refund exactly once across restarts.
After every refused request nothing has changed: no event was appended, the invoice and every
account read as before. The ledger sums to zero after every step checked.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import pytest

from service.app import create_app
from service.config import Config
from service.http.keys import STORE
from tests.e2e.conftest import Api, AppFactory, FakeClock, statuses
from tests.sqlviews import views_query

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "usernew1"
TTL = 2 * 3600
AUTH_ERROR = {"message": "Auth Error", "code": "AUTH_ERROR"}
FORBIDDEN = ("Forbidden", "FORBIDDEN")
ALREADY_CANCELED = ("TRANSACTION IS ALREADY CANCELED", "TRANSACTION_ALREADY_CANCELED")
ALREADY_REFUNDED = ("TRANSACTION IS ALREADY CANCELED", "TRANSACTION_ALREADY_REFUNDED")
ALREADY_COMPLETED = ("TRANSACTION IS ALREADY COMPLETED", "TRANSACTION_ALREADY_COMPLETED")
REFUND_IN_PROCESS = ("REFUND ALREADY IN PROCESS", "REFUND_ALREADY_IN_PROCESS")
EXPIRED = ("EXPIRED INVOICE", "INVOICE_EXPIRED")
NOT_PAID = ("TRANSACTION IS NOT PAID", "TRANSACTION_NOT_PAID")
TRANSACTION_NOT_FOUND = ("Transaction not found", "TRANSACTION_NOT_FOUND")
INVOICE_NOT_FOUND = ("Invoice not found", "INVOICE_NOT_FOUND")
REFUND_FIELD_REQUIRED = ["Required to refund a paid invoice."]


# -- helpers ---------------------------------------------------------------------------------


def store_total(transaction: dict[str, Any]) -> int:
    """What the buyer paid for one store: amount, freight and insurance."""
    return int(
        transaction["amount"] + transaction["freight_charge"] + transaction["insurance_amount"]
    )


async def head(api: Api) -> int:
    assert api.client.app is not None
    return await api.client.app[STORE].head_position()


async def snapshot(api: Api, invoice: str | None) -> tuple[Any, ...]:
    """What a refused request must leave as it was: the log's head, the ledger, the invoice."""
    shown = await api.detail(invoice) if invoice is not None else None
    return await head(api), await api.accounts(), shown


async def refused(
    api: Api,
    action: str,
    answer: tuple[str, str],
    *,
    status: int = 400,
    errors: dict[str, Any] | None = None,
    **body: Any,
) -> None:
    """``action`` is refused with exactly ``answer`` (message, code), and changes nothing."""
    invoice = body.get("invoice_id")
    exists = invoice is not None and await invoice_exists(api, invoice)
    before = await snapshot(api, invoice if exists else None)
    got = await api.platform(action, expect=status, **body)
    message, code = answer
    expected: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        expected["errors"] = errors
    if status == 403 and "errors" in got:  # the reason, for people; not part of the contract
        expected["errors"] = got["errors"]
    assert got == expected
    assert await snapshot(api, invoice if exists else None) == before
    await api.assert_balanced()


async def invoice_exists(api: Api, invoice: str) -> bool:
    assert api.client.app is not None
    rows = await views_query(
        api.client.app[STORE], "SELECT 1 FROM invoice_view WHERE invoice = ?", (invoice,)
    )
    return bool(rows)


async def paid_invoice(api: Api, stores: int = 2, **overrides: Any) -> dict[str, Any]:
    """A checked-out and paid invoice: its detail."""
    created = await api.checkout(stores=stores, **overrides)
    paid = await api.pay(created["xendit_invoice"])
    assert paid["callback"] == {"status": 200, "body": {"message": "PAID"}}
    detail = await api.detail(created["invoice"])
    assert detail["status"] == "PAID"
    assert [t["status"] for t in detail["transaction"]] == ["PAID"] * stores
    return detail


async def wait_for_transaction(
    api: Api, invoice: str, index: int, status: str, within: float = 2.0
) -> dict[str, Any]:
    """Poll the invoice until its transaction ``index`` shows ``status``; its detail."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        detail = await api.detail(invoice)
        if detail["transaction"][index]["status"] == status:
            return detail
        assert asyncio.get_running_loop().time() < deadline, detail
        await asyncio.sleep(0.01)


async def refund(api: Api, invoice: str, transaction: dict[str, Any]) -> dict[str, Any]:
    return await api.platform(
        "cancel",
        invoice_id=invoice,
        invoice_onmarket=transaction["invoice_onmarket"],
        buyer_username=BUYER,
    )


async def slow_refunds_api(aiohttp_client: AppFactory, config: Config, clock: FakeClock) -> Api:
    """The app with a refund worker that waits an hour: REFUND_IN_PROCESS stays observable."""
    slow = dataclasses.replace(config, refund_delay_seconds=3600)
    return Api(await aiohttp_client(create_app(slow, clock=clock)), slow, clock)


# -- PENDING ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stores", [1, 2])
@pytest.mark.parametrize("then", ["cancel", "done"])
async def test_cancel_of_a_pending_invoice_cancels_it_whole_and_for_good(
    api: Api, stores: int, then: str
) -> None:
    """Cancel on PENDING cancels every transaction; cancel or done afterwards is refused."""
    created = await api.checkout(stores=stores)
    invoice = created["invoice"]
    first = created["transaction"][0]["invoice_onmarket"]

    answer = await api.platform("cancel", invoice_id=invoice)

    assert answer == {"message": "INVOICE CANCELED"}
    detail = await api.detail(invoice)
    assert detail["status"] == "CANCELED"
    assert [t["status"] for t in detail["transaction"]] == ["CANCELED"] * stores
    assert await api.accounts() == {}
    await refused(api, then, ALREADY_CANCELED, invoice_id=invoice, invoice_onmarket=first)
    extra: dict[str, Any] = {"buyer_username": BUYER} if then == "cancel" else {}
    await refused(api, then, ALREADY_CANCELED, invoice_id=invoice, invoice_onmarket=first, **extra)
    await refused(api, then, ALREADY_CANCELED, invoice_id=invoice)  # no store named: same


@pytest.mark.parametrize("stores", [1, 2])
async def test_done_on_a_pending_transaction_is_refused(api: Api, stores: int) -> None:
    """Done on a PENDING transaction: TRANSACTION IS NOT PAID, named or (one store) not."""
    created = await api.checkout(stores=stores)
    invoice = created["invoice"]
    for transaction in created["transaction"]:
        await refused(
            api,
            "done",
            NOT_PAID,
            invoice_id=invoice,
            invoice_onmarket=transaction["invoice_onmarket"],
        )
    if stores == 1:
        await refused(api, "done", NOT_PAID, invoice_id=invoice)
    assert (await api.detail(invoice))["status"] == "PENDING"


@pytest.mark.parametrize("seconds", [TTL, TTL + 1])
@pytest.mark.parametrize("action", ["cancel", "done"])
async def test_actions_on_an_expired_invoice_are_refused(
    api: Api, clock: FakeClock, action: str, seconds: int
) -> None:
    """Cancel and done on an invoice past expired_at: 400 EXPIRED INVOICE, before and after the
    expiry task recorded it."""
    created = await api.checkout()
    invoice = created["invoice"]
    first = created["transaction"][0]["invoice_onmarket"]
    clock.advance(seconds)

    answer = await api.platform(action, expect=400, invoice_id=invoice, invoice_onmarket=first)
    assert answer == {"message": EXPIRED[0], "code": EXPIRED[1]}

    await api.wait_until_expired_in_view(invoice)
    detail = await api.detail(invoice)
    assert detail["status"] == "EXPIRED"
    assert [t["status"] for t in detail["transaction"]] == ["EXPIRED", "EXPIRED"]
    await refused(api, action, EXPIRED, invoice_id=invoice, invoice_onmarket=first)
    await refused(api, action, EXPIRED, invoice_id=invoice)  # no store named: same answer
    if action == "cancel":
        await refused(
            api, action, EXPIRED, invoice_id=invoice, invoice_onmarket=first, buyer_username=BUYER
        )
    assert await api.accounts() == {}


# -- PAID: refunds ---------------------------------------------------------------------------


REFUND_WITHOUT: list[tuple[dict[str, Any], list[str]]] = [
    ({"buyer_username": BUYER}, ["invoice_onmarket"]),
    ({"invoice_onmarket": None, "buyer_username": BUYER}, ["invoice_onmarket"]),
    ({"store": True}, ["buyer_username"]),
    ({"store": True, "buyer_username": None}, ["buyer_username"]),
    ({"invoice_onmarket": None}, ["invoice_onmarket", "buyer_username"]),
    ({}, ["invoice_onmarket", "buyer_username"]),
]


@pytest.mark.parametrize("stores", [1, 2])
async def test_refund_of_a_paid_invoice_needs_the_store_and_the_buyer(
    api: Api, stores: int
) -> None:
    """Cancel on PAID without invoice_onmarket or buyer_username: 400 VALIDATION naming each
    missing field, even for a one-store invoice."""
    detail = await paid_invoice(api, stores=stores)
    for given, missing in REFUND_WITHOUT:
        body = dict(given)
        if body.pop("store", False):
            body["invoice_onmarket"] = detail["transaction"][0]["invoice_onmarket"]
        await refused(
            api,
            "cancel",
            ("Invalid JSON Format", "VALIDATION"),
            errors={name: REFUND_FIELD_REQUIRED for name in missing},
            invoice_id=detail["invoice"],
            **body,
        )


async def test_refund_to_someone_other_than_the_buyer_is_refused(api: Api) -> None:
    """Cancel on PAID naming another user as the buyer: 400 BUYER_MISMATCH, nothing refunded."""
    detail = await paid_invoice(api)
    for someone_else in ("seller1", "usernew2", "USERNEW1", "onmarket"):
        await refused(
            api,
            "cancel",
            ("Invalid JSON Format", "BUYER_MISMATCH"),
            errors={"buyer_username": ["Not the buyer of this invoice."]},
            invoice_id=detail["invoice"],
            invoice_onmarket=detail["transaction"][0]["invoice_onmarket"],
            buyer_username=someone_else,
        )


async def test_a_refund_stays_in_process_until_the_worker_pays_it(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Cancel on PAID: REFUND IN PROCESS; meanwhile cancel and done answer REFUND ALREADY IN
    PROCESS, the other store is untouched and the money stays in escrow."""
    api = await slow_refunds_api(aiohttp_client, config, clock)
    detail = await paid_invoice(api)
    invoice = detail["invoice"]
    first, second = detail["transaction"]
    total = detail["amount"]

    assert await refund(api, invoice, first) == {"message": "REFUND IN PROCESS"}

    shown = await api.detail(invoice)
    assert shown["status"] == "PAID"
    assert [t["status"] for t in shown["transaction"]] == ["REFUND_IN_PROCESS", "PAID"]
    assert await api.accounts() == {"gateway:xendit": -total, f"escrow:{invoice}": total}
    store = first["invoice_onmarket"]
    await refused(
        api,
        "cancel",
        REFUND_IN_PROCESS,
        invoice_id=invoice,
        invoice_onmarket=store,
        buyer_username=BUYER,
    )
    await refused(api, "done", REFUND_IN_PROCESS, invoice_id=invoice, invoice_onmarket=store)
    await asyncio.sleep(0.1)  # the worker is waiting: still in process, nothing credited
    assert (await api.detail(invoice))["transaction"][0]["status"] == "REFUND_IN_PROCESS"
    assert (await api.balance(BUYER))["balance"] == 0

    # The other store can still be completed or refunded on its own.
    answer = await api.platform(
        "done", invoice_id=invoice, invoice_onmarket=second["invoice_onmarket"]
    )
    assert answer == {"message": "TRANSACTION IS COMPLETED"}
    shown = await api.detail(invoice)
    assert shown["status"] == "PAID"
    assert [t["status"] for t in shown["transaction"]] == ["REFUND_IN_PROCESS", "COMPLETED"]
    assert (await api.accounts())[f"escrow:{invoice}"] == store_total(first)
    await api.assert_balanced()


@pytest.mark.parametrize("then", ["cancel", "done"])
async def test_a_refunded_transaction_is_credited_to_the_buyer_and_then_final(
    api: Api, then: str
) -> None:
    """The worker refunds amount + freight + insurance to the buyer (REFUNDED); afterwards cancel
    and done answer TRANSACTION IS ALREADY CANCELED (code TRANSACTION_ALREADY_REFUNDED)."""
    detail = await paid_invoice(api)
    invoice = detail["invoice"]
    first = detail["transaction"][0]

    assert await refund(api, invoice, first) == {"message": "REFUND IN PROCESS"}
    shown = await wait_for_transaction(api, invoice, 0, "REFUNDED")

    assert shown["status"] == "PAID"  # the other store is still PAID
    assert shown["transaction"][1]["status"] == "PAID"
    assert store_total(first) == 10000 + 5000 + 100
    buyer = await api.balance(BUYER)
    assert buyer["balance"] == store_total(first)
    assert [(e["account"], e["amount"], e["type"], e["invoice"]) for e in buyer["entries"]] == [
        (f"buyer:{BUYER}", store_total(first), "BalanceCredited", invoice)
    ]
    body: dict[str, Any] = {"invoice_id": invoice, "invoice_onmarket": first["invoice_onmarket"]}
    if then == "cancel":
        body["buyer_username"] = BUYER
    await refused(api, then, ALREADY_REFUNDED, **body)
    await refused(api, then, ALREADY_REFUNDED, **body)
    assert (await api.balance(BUYER))["balance"] == store_total(first)


# -- PAID: done ------------------------------------------------------------------------------


@pytest.mark.parametrize("then", ["cancel", "done"])
async def test_done_completes_a_paid_transaction_once(api: Api, then: str) -> None:
    """Done on PAID: TRANSACTION IS COMPLETED; then done or cancel of it: ALREADY COMPLETED."""
    detail = await paid_invoice(api)
    invoice = detail["invoice"]
    first = detail["transaction"][0]["invoice_onmarket"]

    answer = await api.platform("done", invoice_id=invoice, invoice_onmarket=first)

    assert answer == {"message": "TRANSACTION IS COMPLETED"}
    shown = await api.detail(invoice)
    assert shown["status"] == "PAID"
    assert [t["status"] for t in shown["transaction"]] == ["COMPLETED", "PAID"]
    extra: dict[str, Any] = {"buyer_username": BUYER} if then == "cancel" else {}
    await refused(api, then, ALREADY_COMPLETED, invoice_id=invoice, invoice_onmarket=first, **extra)
    assert (await api.balance("seller1"))["seller_balance"] == 10000 + 5000 - 1000
    assert (await api.balance(BUYER))["balance"] == 0


async def test_invoice_onmarket_may_be_left_out_of_done_only_for_one_store(api: Api) -> None:
    """Done without invoice_onmarket: fine for a one-store invoice, 400 VALIDATION for two."""
    single = await paid_invoice(api, stores=1)
    answer = await api.platform("done", invoice_id=single["invoice"])
    assert answer == {"message": "TRANSACTION IS COMPLETED"}
    shown = await api.detail(single["invoice"])
    assert shown["status"] == "COMPLETED"
    assert [t["status"] for t in shown["transaction"]] == ["COMPLETED"]

    double = await paid_invoice(api, stores=2)
    await refused(
        api,
        "done",
        ("Invalid JSON Format", "VALIDATION"),
        errors={"invoice_onmarket": ["Required when the invoice has several transactions."]},
        invoice_id=double["invoice"],
    )
    assert [t["status"] for t in (await api.detail(double["invoice"]))["transaction"]] == [
        "PAID",
        "PAID",
    ]


@pytest.mark.parametrize("action", ["cancel", "done"])
async def test_a_store_invoice_not_in_the_invoice_is_refused(api: Api, action: str) -> None:
    """An invoice_onmarket that is not one of the invoice's: 400 TRANSACTION_NOT_FOUND."""
    detail = await paid_invoice(api)
    other = await api.checkout()  # a real store invoice number, of another invoice
    extra: dict[str, Any] = {"buyer_username": BUYER} if action == "cancel" else {}
    for store in ("INV/ONM/NOT-HERE", other["transaction"][0]["invoice_onmarket"]):
        await refused(
            api,
            action,
            TRANSACTION_NOT_FOUND,
            invoice_id=detail["invoice"],
            invoice_onmarket=store,
            **extra,
        )


@pytest.mark.parametrize("action", ["cancel", "done"])
async def test_an_unknown_invoice_is_not_found(api: Api, action: str) -> None:
    """An invoice id of the platform's own service that does not exist: 400 Invoice not found.
    An id of another service (or of none) is refused as another service's, existing or not,
    so a platform cannot probe for the others' invoices."""
    await api.checkout()
    extra: dict[str, Any] = {"buyer_username": BUYER} if action == "cancel" else {}
    await refused(
        api,
        action,
        INVOICE_NOT_FOUND,
        invoice_id="OM0000000000000",
        invoice_onmarket="INV/ONM/T-1",
        **extra,
    )
    for invoice in ("OD0003d0CS00009", "nothing"):
        answer = await api.platform(
            action, expect=403, invoice_id=invoice, invoice_onmarket="INV/ONM/T-1", **extra
        )
        assert answer["code"] == "FORBIDDEN"


async def test_a_paid_invoice_does_not_expire(api: Api, clock: FakeClock) -> None:
    """Past expired_at a PAID invoice is still PAID: done and refund still work."""
    detail = await paid_invoice(api)
    invoice = detail["invoice"]
    first, second = detail["transaction"]
    clock.advance(TTL + 60)
    await asyncio.sleep(0.15)  # several runs of the expiry task

    shown = await api.detail(invoice)
    assert shown["status"] == "PAID"
    assert [t["status"] for t in shown["transaction"]] == ["PAID", "PAID"]
    answer = await api.platform(
        "done", invoice_id=invoice, invoice_onmarket=first["invoice_onmarket"]
    )
    assert answer == {"message": "TRANSACTION IS COMPLETED"}
    assert await refund(api, invoice, second) == {"message": "REFUND IN PROCESS"}
    shown = await wait_for_transaction(api, invoice, 1, "REFUNDED")
    assert shown["status"] == "COMPLETED"
    await api.assert_balanced()


# -- settling an invoice, and where the money goes --------------------------------------------


def expected_accounts(
    invoice: str, total: int, transactions: list[dict[str, Any]], settled: list[tuple[int, str]]
) -> dict[str, int]:
    """The whole ledger after paying ``total`` and settling ``(index, action)`` in order."""
    ledger: dict[str, int] = {"gateway:xendit": -total, f"escrow:{invoice}": total}

    def move(account: str, amount: int) -> None:
        ledger[account] = ledger.get(account, 0) + amount

    for index, action in settled:
        line = transactions[index]
        move(f"escrow:{invoice}", -store_total(line))
        if action == "done":
            commission = line["commission_onmarket"]
            move(
                f"seller:{line['seller_username']}",
                line["amount"] + line["freight_charge"] - commission,
            )
            move("platform:ONMARKET:commission", commission)
            move("platform:ONMARKET:insurance", line["insurance_amount"])
        else:
            move(f"buyer:{BUYER}", store_total(line))
    return {account: amount for account, amount in ledger.items() if amount}


@pytest.mark.parametrize(
    ("plan", "final"),
    [
        pytest.param(("done", "done"), "COMPLETED", id="both-completed"),
        pytest.param(("done", "cancel"), "COMPLETED", id="completed-then-refunded"),
        pytest.param(("cancel", "done"), "COMPLETED", id="refunded-then-completed"),
        pytest.param(("cancel", "cancel"), "REFUNDED", id="both-refunded"),
    ],
)
async def test_an_invoice_settles_once_every_transaction_is_settled(
    api: Api, plan: tuple[str, str], final: str
) -> None:
    """Each payment, completion and refund posts exactly its money; the invoice is COMPLETED
    once each store is completed or refunded with one completed, REFUNDED if all refunded;
    the escrow ends empty."""
    created = await api.checkout()
    invoice = created["invoice"]
    assert await api.accounts() == {}

    await api.pay(created["xendit_invoice"])

    detail = await api.detail(invoice)
    total = detail["amount"]
    transactions = detail["transaction"]
    assert total == 40200 == sum(store_total(t) for t in transactions)
    assert await api.accounts() == expected_accounts(invoice, total, transactions, [])
    await api.assert_balanced()

    settled: list[tuple[int, str]] = []
    for index, action in enumerate(plan):
        line = transactions[index]
        if action == "done":
            answer = await api.platform(
                "done", invoice_id=invoice, invoice_onmarket=line["invoice_onmarket"]
            )
            assert answer == {"message": "TRANSACTION IS COMPLETED"}
            shown = await api.detail(invoice)
        else:
            assert await refund(api, invoice, line) == {"message": "REFUND IN PROCESS"}
            shown = await wait_for_transaction(api, invoice, index, "REFUNDED")
        settled.append((index, action))
        assert shown["transaction"][index]["status"] == (
            "COMPLETED" if action == "done" else "REFUNDED"
        )
        assert shown["status"] == ("PAID" if index == 0 else final)
        assert await api.accounts() == expected_accounts(invoice, total, transactions, settled)
        await api.assert_balanced()

    ledger = await api.accounts()
    assert f"escrow:{invoice}" not in ledger  # zero: every transaction settled
    # Nothing more can happen to a settled invoice.
    for index, action in enumerate(plan):
        refusal = ALREADY_COMPLETED if action == "done" else ALREADY_REFUNDED
        store = transactions[index]["invoice_onmarket"]
        await refused(api, "done", refusal, invoice_id=invoice, invoice_onmarket=store)
        await refused(
            api, "cancel", refusal, invoice_id=invoice, invoice_onmarket=store, buyer_username=BUYER
        )
    assert (await api.detail(invoice))["status"] == final


async def test_done_pays_the_seller_commission_and_insurance_accounts(api: Api) -> None:
    """Done: seller gets amount + freight - commission, the platform the commission and the
    insurance; GET /balance shows the seller's entry."""
    detail = await paid_invoice(api, stores=1)
    invoice = detail["invoice"]
    await api.platform("done", invoice_id=invoice)

    assert await api.accounts() == {
        "gateway:xendit": -15100,
        "seller:seller1": 14000,
        "platform:ONMARKET:commission": 1000,
        "platform:ONMARKET:insurance": 100,
    }
    seller = await api.balance("seller1")
    assert (seller["balance"], seller["seller_balance"]) == (0, 14000)
    assert [(e["account"], e["amount"], e["type"], e["invoice"]) for e in seller["entries"]] == [
        ("seller:seller1", 14000, "TransactionCompleted", invoice)
    ]
    await api.assert_balanced()


async def test_a_balance_paid_invoice_moves_the_buyers_money_through_escrow(api: Api) -> None:
    """A BALANCE checkout moves the total from the buyer to escrow; a refund moves it back."""
    await api.top_up(BUYER, 50000)
    created = await api.checkout(source="BALANCE", stores=1)
    invoice = created["invoice"]
    assert await api.accounts() == {
        "external:topup": -50000,
        f"buyer:{BUYER}": 50000 - 15100,
        f"escrow:{invoice}": 15100,
    }
    assert await api.platform(
        "cancel",
        invoice_id=invoice,
        invoice_onmarket=created["transaction"][0]["invoice_onmarket"],
        buyer_username=BUYER,
    ) == {"message": "REFUND IN PROCESS"}
    shown = await wait_for_transaction(api, invoice, 0, "REFUNDED")
    assert shown["status"] == "REFUNDED"
    assert await api.accounts() == {"external:topup": -50000, f"buyer:{BUYER}": 50000}
    await api.assert_balanced()


# -- who may act -----------------------------------------------------------------------------

FORBIDDEN_CASES = [
    ("onmarket", "ONDELIVERY"),  # the body's platform is not the account's
    ("onmarket", "ONTICKET"),
    ("ondelivery", "ONMARKET"),
    ("ondelivery", "ONDELIVERY"),  # another platform's invoice
    ("onticket", "ONTICKET"),
    ("usernew1", "ONMARKET"),  # a buyer
    ("seller1", "ONMARKET"),  # a seller (buyer role)
    ("admin", "ONMARKET"),  # an admin is not a platform
]


@pytest.mark.parametrize("action", ["cancel", "done"])
async def test_only_the_invoices_own_platform_may_act(api: Api, action: str) -> None:
    """Another platform, a body platform that is not the account's, a buyer or an admin:
    403 FORBIDDEN, and nothing changes, for a PENDING and a PAID invoice."""
    pending = await api.detail((await api.checkout())["invoice"])
    paid = await paid_invoice(api)
    for detail in (pending, paid):
        invoice = detail["invoice"]
        store = detail["transaction"][0]["invoice_onmarket"]
        extra: dict[str, Any] = {"buyer_username": BUYER} if action == "cancel" else {}
        for account, platform in FORBIDDEN_CASES:
            for body in ({"invoice_onmarket": store, **extra}, {}):
                await refused(
                    api,
                    action,
                    FORBIDDEN,
                    status=403,
                    account=account,
                    platform=platform,
                    invoice_id=invoice,
                    **body,
                )
    assert (await api.detail(pending["invoice"]))["status"] == "PENDING"
    assert (await api.detail(paid["invoice"]))["status"] == "PAID"


def _basic_raw(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


BAD_CREDENTIALS = [
    Api.basic("onmarket", "wrong"),
    Api.basic("onmarket", ""),
    Api.basic("onmarket", "ONMARKET"),
    Api.basic("ONMARKET", "onmarket"),
    Api.basic("nobody"),
    {},
    {"Authorization": ""},
    {"Authorization": "Basic"},
    {"Authorization": "Basic !!!not-base64!!!"},
    _basic_raw(b"onmarket"),  # no colon
    _basic_raw(b"\xff\xfe:\xff"),  # not UTF-8
    {"Authorization": "Digest onmarket"},
]


@pytest.mark.parametrize("action", ["cancel", "done"])
async def test_bad_platform_credentials_are_an_auth_error(api: Api, action: str) -> None:
    """Wrong password, unknown user, no or malformed Basic header: 401 Auth Error."""
    detail = await paid_invoice(api)
    invoice = detail["invoice"]
    body = {
        "platform": "ONMARKET",
        "invoice_id": invoice,
        "invoice_onmarket": detail["transaction"][0]["invoice_onmarket"],
    }
    if action == "cancel":
        body["buyer_username"] = BUYER
    before = await snapshot(api, invoice)
    for headers in BAD_CREDENTIALS:
        response = await api.client.post(f"/invoice/{action}", json=body, headers=headers)
        assert (response.status, await response.json()) == (401, AUTH_ERROR), headers
    assert await snapshot(api, invoice) == before


@pytest.mark.parametrize("action", ["cancel", "done"])
async def test_a_buyer_token_is_not_platform_credentials(api: Api, action: str) -> None:
    """A Bearer token, even a platform account's, is not Basic: 401 Auth Error."""
    detail = await paid_invoice(api)
    invoice = detail["invoice"]
    before = await snapshot(api, invoice)
    for username in (BUYER, "onmarket"):
        response = await api.client.post(
            f"/invoice/{action}",
            json={"platform": "ONMARKET", "invoice_id": invoice},
            headers=api.bearer(username),
        )
        assert response.status == 401
        assert await response.json() == AUTH_ERROR
    assert await snapshot(api, invoice) == before


@pytest.mark.parametrize(
    ("service", "account", "prefix"),
    [("ONDELIVERY", "ondelivery", "OD"), ("ONTICKET", "onticket", "OT")],
)
async def test_each_platform_acts_on_its_own_services_invoices(
    api: Api, service: str, account: str, prefix: str
) -> None:
    """ondelivery and onticket complete and refund their own invoices; onmarket may not."""
    detail = await paid_invoice(api, service=service)
    invoice = detail["invoice"]
    assert invoice.startswith(prefix)
    first, second = detail["transaction"]
    await refused(
        api,
        "done",
        FORBIDDEN,
        status=403,
        invoice_id=invoice,
        invoice_onmarket=first["invoice_onmarket"],
    )
    answer = await api.platform(
        "done",
        account=account,
        platform=service,
        invoice_id=invoice,
        invoice_onmarket=first["invoice_onmarket"],
    )
    assert answer == {"message": "TRANSACTION IS COMPLETED"}
    answer = await api.platform(
        "cancel",
        account=account,
        platform=service,
        invoice_id=invoice,
        invoice_onmarket=second["invoice_onmarket"],
        buyer_username=BUYER,
    )
    assert answer == {"message": "REFUND IN PROCESS"}
    shown = await wait_for_transaction(api, invoice, 1, "REFUNDED")
    assert shown["status"] == "COMPLETED"
    assert await api.accounts() == {
        "gateway:xendit": -40200,
        "seller:seller1": 14000,
        f"platform:{service}:commission": 1000,
        f"platform:{service}:insurance": 100,
        f"buyer:{BUYER}": 25100,
    }
    await api.assert_balanced()


# -- races -----------------------------------------------------------------------------------


async def post_action(api: Api, action: str, **body: Any) -> tuple[int, dict[str, Any]]:
    """POST /invoice/{action} as onmarket; the status and the answer, whatever they are."""
    response = await api.client.post(
        f"/invoice/{action}",
        json={"platform": "ONMARKET", **body},
        headers=api.basic("onmarket"),
    )
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def test_cancel_and_done_racing_on_one_transaction_have_one_winner(api: Api) -> None:
    """Cancel and done at once on a PAID transaction, 30 times: exactly one wins, the loser gets
    a documented 400, and the money goes exactly one way."""
    await api.platform("done", expect=403, invoice_id="warm-up")  # scrypt once, before racing
    buyer_expected = seller_expected = 0
    winners: list[str] = []
    for round_ in range(30):
        detail = await paid_invoice(api, stores=1)
        invoice = detail["invoice"]
        store = detail["transaction"][0]["invoice_onmarket"]
        cancel = post_action(
            api, "cancel", invoice_id=invoice, invoice_onmarket=store, buyer_username=BUYER
        )
        done = post_action(api, "done", invoice_id=invoice, invoice_onmarket=store)
        if round_ % 2:
            done_answer, cancel_answer = await asyncio.gather(done, cancel)
        else:
            cancel_answer, done_answer = await asyncio.gather(cancel, done)

        if cancel_answer[0] == 200:
            winners.append("cancel")
            assert cancel_answer == (200, {"message": "REFUND IN PROCESS"})
            assert done_answer in (
                (400, {"message": REFUND_IN_PROCESS[0], "code": REFUND_IN_PROCESS[1]}),
                (400, {"message": ALREADY_REFUNDED[0], "code": ALREADY_REFUNDED[1]}),
            )
            shown = await wait_for_transaction(api, invoice, 0, "REFUNDED")
            assert shown["status"] == "REFUNDED"
            buyer_expected += 15100
        else:
            winners.append("done")
            assert done_answer == (200, {"message": "TRANSACTION IS COMPLETED"})
            assert cancel_answer == (
                400,
                {"message": ALREADY_COMPLETED[0], "code": ALREADY_COMPLETED[1]},
            )
            shown = await api.detail(invoice)
            assert shown["status"] == "COMPLETED"
            seller_expected += 14000
        ledger = await api.accounts()
        assert f"escrow:{invoice}" not in ledger
        assert ledger.get(f"buyer:{BUYER}", 0) == buyer_expected
        assert ledger.get("seller:seller1", 0) == seller_expected
        await api.assert_balanced()
    assert len(winners) == 30
    # One more look once every refund had time to run: nothing was credited twice.
    await asyncio.sleep(0.05)
    assert (await api.balance(BUYER))["balance"] == buyer_expected
    assert (await api.balance("seller1"))["seller_balance"] == seller_expected


async def test_actions_on_different_stores_at_once_both_succeed(api: Api) -> None:
    """A refund of one store and the completion of the other at once, 10 times: both succeed
    and the invoice ends COMPLETED with every account exact."""
    await api.platform("done", expect=403, invoice_id="warm-up")  # scrypt once, before racing
    for round_ in range(10):
        detail = await paid_invoice(api)
        invoice = detail["invoice"]
        first, second = detail["transaction"]
        cancel = post_action(
            api,
            "cancel",
            invoice_id=invoice,
            invoice_onmarket=first["invoice_onmarket"],
            buyer_username=BUYER,
        )
        done = post_action(
            api, "done", invoice_id=invoice, invoice_onmarket=second["invoice_onmarket"]
        )
        if round_ % 2:
            done_answer, cancel_answer = await asyncio.gather(done, cancel)
        else:
            cancel_answer, done_answer = await asyncio.gather(cancel, done)

        assert cancel_answer == (200, {"message": "REFUND IN PROCESS"})
        assert done_answer == (200, {"message": "TRANSACTION IS COMPLETED"})
        shown = await wait_for_transaction(api, invoice, 0, "REFUNDED")
        assert statuses(shown) == ("COMPLETED", ["REFUNDED", "COMPLETED"])
        ledger = await api.accounts()
        assert f"escrow:{invoice}" not in ledger
        assert ledger[f"buyer:{BUYER}"] == (round_ + 1) * 15100
        assert ledger["seller:seller2"] == (round_ + 1) * (20000 + 5000 - 1000)
        await api.assert_balanced()


# -- the refund worker across restarts -------------------------------------------------------


async def refund_one(api: Api) -> str:
    """A one-store invoice, paid and then refunded: its id (the refund may still be running)."""
    detail = await paid_invoice(api, stores=1)
    answer = await refund(api, detail["invoice"], detail["transaction"][0])
    assert answer == {"message": "REFUND IN PROCESS"}
    return str(detail["invoice"])


async def restart(api: Api, aiohttp_client: AppFactory, config: Config) -> Api:
    """Stop the app (its workers too) and start a new one on the same database."""
    await api.client.close()
    return Api(await aiohttp_client(create_app(config, clock=api.clock)), config, api.clock)


async def refund_credits(api: Api) -> list[int]:
    """The amounts of every refund credit in the log, from the buyer's balance stream."""
    assert api.client.app is not None
    return [
        event.data["amount"]
        async for event in api.client.app[STORE].read_stream(f"balance-{BUYER}")
        if event.type == "BalanceCredited" and event.data.get("reason") == "refund"
    ]


async def test_refunds_are_credited_once_across_restarts(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Several refunds, then two restarts on the same database: each refund credited once."""
    api = Api(await aiohttp_client(create_app(config, clock=clock)), config, clock)
    refunded = 0
    for _ in range(4):
        invoice = await refund_one(api)
        await wait_for_transaction(api, invoice, 0, "REFUNDED")
        refunded += 15100
    assert (await api.balance(BUYER))["balance"] == refunded

    for _ in range(2):
        api = await restart(api, aiohttp_client, config)
        # A new refund after the restart shows the new worker has read past the old ones.
        invoice = await refund_one(api)
        await wait_for_transaction(api, invoice, 0, "REFUNDED")
        refunded += 15100
        await asyncio.sleep(0.05)
        assert (await api.balance(BUYER))["balance"] == refunded
        assert await refund_credits(api) == [15100] * (refunded // 15100)
        await api.assert_balanced()


async def test_refunds_asked_for_before_a_restart_are_paid_after_it_once(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Refunds still in process when the app stops are paid by the next one, exactly once."""
    api = await slow_refunds_api(aiohttp_client, config, clock)
    invoices = [await refund_one(api) for _ in range(3)]
    for invoice in invoices:
        assert (await api.detail(invoice))["transaction"][0]["status"] == "REFUND_IN_PROCESS"
    assert (await api.balance(BUYER))["balance"] == 0

    api = await restart(api, aiohttp_client, config)  # refund_delay_seconds=0 again
    for invoice in invoices:
        shown = await wait_for_transaction(api, invoice, 0, "REFUNDED")
        assert shown["status"] == "REFUNDED"
    assert (await api.balance(BUYER))["balance"] == 3 * 15100

    api = await restart(api, aiohttp_client, config)
    invoice = await refund_one(api)
    await wait_for_transaction(api, invoice, 0, "REFUNDED")
    await asyncio.sleep(0.05)
    assert (await api.balance(BUYER))["balance"] == 4 * 15100
    assert await refund_credits(api) == [15100] * 4
    for invoice in invoices:
        assert (await api.accounts()).get(f"escrow:{invoice}", 0) == 0
    await api.assert_balanced()


async def test_another_services_invoice_is_refused_alike_whether_it_exists_or_not(
    api: Api,
) -> None:
    """ONDELIVERY asking about an ONMARKET invoice learns nothing about which exist."""
    invoice = (await api.checkout())["invoice"]
    answers = []
    for invoice_id in (invoice, "OM0000000000000"):
        response = await api.client.post(
            "/invoice/done",
            json={"platform": "ONDELIVERY", "invoice_id": invoice_id},
            headers=api.basic("ondelivery"),
        )
        answers.append((response.status, await response.json()))

    assert answers[0] == answers[1] == (403, {"message": "Forbidden", "code": "FORBIDDEN"})
