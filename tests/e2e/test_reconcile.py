"""Reconciliation: payments and expiries whose callbacks were lost, found by asking the gateway.

With the sandbox gateway (paying through ``/sandbox/invoices/{ref}/pay`` with
``deliver_callback: false``) and with Xendit's adapter against the fake Xendit (``fake.pay``),
``reconcile_all`` applies what the gateway knows through the callback's own path: a lost payment
pays the invoice; a payment that came after expiry or cancel is credited to the buyer; an expiry
at the gateway expires the invoice. Reconciling again, or after the callback did arrive, changes
nothing, and the ledger sums to zero throughout. With the gateway down each invoice counts as
"failed" and nothing changes. The periodic task does the same on its own, and so does the
command line, ``python -m service reconcile``, run as an operator would.

The clock starts at the real time: the command line reconciles at the wall clock's now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventstore import open_store
from service.app import create_app
from service.application import Context, Reconcile
from service.config import Config
from service.gateway.sandbox import SandboxGateway
from service.http.keys import GATEWAY, READ_MODEL, SERVICE, STORE
from service.views.backends import projectors_for
from service.workers.reconcile import reconcile_all
from tests.e2e.conftest import Api, AppFactory, FakeClock, statuses
from tests.fakes.xendit import SECRET_KEY, FakeXendit
from tests.integration.cli import REPO_ROOT, environment
from tests.sqlviews import views_query

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "usernew1"
TOTAL = 40200  # the default two-store checkout
TTL = 2 * 3600
WINDOW = timedelta(days=1)
CLI_TIMEOUT = 30.0
RECONCILE = Context("test:reconcile")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


async def reconcile(api: Api) -> Counter[str]:
    """One reconciliation pass over the app's store, at the app's clock."""
    app = api.client.app
    return await reconcile_all(app[READ_MODEL], app[SERVICE], now=api.clock(), window=WINDOW)


async def head(api: Api) -> int:
    return await api.client.app[STORE].head_position()


async def invoice_events(api: Api, invoice: str) -> list[tuple[str, dict[str, Any]]]:
    """The invoice's events: (type, data), in order."""
    store = api.client.app[STORE]
    return [(e.type, e.data) async for e in store.read_stream(f"invoice-{invoice}")]


CALLBACK_FIELDS = (
    "id",
    "external_id",
    "status",
    "amount",
    "paid_amount",
    "paid_at",
    "payment_method",
    "payment_channel",
)


async def send_invoice_callback(
    api: Api, invoice: dict[str, Any], payment_id: str
) -> tuple[int, Any]:
    """POST Xendit's invoice callback for the fake's paid ``invoice`` (with ``payment_id``, as
    Xendit's callback carries it), signed with the configured token."""
    body = {**{key: invoice[key] for key in CALLBACK_FIELDS}, "payment_id": payment_id}
    response = await api.client.post(
        "/callback/xendit/invoice",
        data=orjson.dumps(body),
        headers={"x-callback-token": api.config.callback_token, "Content-Type": "application/json"},
    )
    return response.status, await response.json()


async def pay_without_callback(api: Api, reference: str, **options: Any) -> str:
    """Pay at the sandbox gateway, the callback lost; returns the payment id."""
    answer = await api.pay(reference, deliver_callback=False, **options)
    assert answer["message"] == "PAID AT GATEWAY", answer
    payment_id: str = answer["payment_id"]
    return payment_id


# -- the sandbox gateway -----------------------------------------------------------------------


async def test_a_payment_whose_callback_was_lost_is_found_by_reconcile(api: Api) -> None:
    """Paid at the gateway, no callback: still PENDING; reconcile pays it with the gateway's
    payment id, the total in escrow."""
    created = await api.checkout()
    invoice = created["invoice"]
    payment_id = await pay_without_callback(api, created["xendit_invoice"])
    assert statuses(await api.detail(invoice)) == ("PENDING", ["PENDING", "PENDING"])

    assert await reconcile(api) == Counter({"paid": 1})

    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    events = await invoice_events(api, invoice)
    assert [kind for kind, _ in events] == ["InvoiceCreated", "InvoicePaid"]
    assert (events[1][1]["payment_id"], events[1][1]["amount"]) == (payment_id, TOTAL)
    assert (await api.accounts())[f"escrow:{invoice}"] == TOTAL
    await api.assert_balanced()


async def test_a_second_reconcile_changes_nothing(api: Api) -> None:
    """After a payment was reconciled, another pass finds nothing to do, and reconciling the
    invoice itself is a duplicate: no event, the ledger still sums to zero."""
    created = await api.checkout()
    invoice = created["invoice"]
    await pay_without_callback(api, created["xendit_invoice"])
    assert await reconcile(api) == Counter({"paid": 1})
    position, ledger = await head(api), await api.accounts()

    assert await reconcile(api) == Counter()
    assert await api.client.app[SERVICE].handle(Reconcile(invoice), RECONCILE) == "duplicate"

    assert (await head(api), await api.accounts()) == (position, ledger)
    assert await api.ledger_sum() == 0


async def test_reconcile_after_the_callback_arrived_is_a_duplicate(api: Api) -> None:
    """The callback did arrive: reconciling finds the same payment id and does nothing; the
    buyer is not credited a second time."""
    created = await api.checkout()
    invoice = created["invoice"]
    paid = await api.pay(created["xendit_invoice"])
    assert paid["callback"]["body"] == {"message": "PAID"}
    position = await head(api)

    assert await api.client.app[SERVICE].handle(Reconcile(invoice), RECONCILE) == "duplicate"

    assert await head(api) == position
    assert (await api.balance(BUYER))["balance"] == 0
    await api.assert_balanced()


async def test_an_unpaid_invoice_stays_pending(api: Api) -> None:
    """Nothing paid at the gateway: reconcile counts it pending and writes nothing."""
    created = await api.checkout()
    position = await head(api)

    assert await reconcile(api) == Counter({"pending": 1})

    assert await head(api) == position
    assert (await api.detail(created["invoice"]))["status"] == "PENDING"


async def test_a_payment_after_expiry_is_credited_to_the_buyer(api: Api, clock: FakeClock) -> None:
    """Paid at the gateway after the invoice expired, callback lost: reconcile keeps the money
    as the buyer's balance; the invoice stays EXPIRED."""
    created = await api.checkout()
    invoice = created["invoice"]
    clock.advance(TTL + 1)
    await api.wait_until_expired_in_view(invoice)
    await pay_without_callback(api, created["xendit_invoice"])

    assert await reconcile(api) == Counter({"credited": 1})

    assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    assert (await api.balance(BUYER))["balance"] == TOTAL
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"buyer:{BUYER}": TOTAL}
    assert await reconcile(api) == Counter({"duplicate": 1})
    assert (await api.balance(BUYER))["balance"] == TOTAL
    await api.assert_balanced()


async def test_a_payment_after_cancel_is_credited_to_the_buyer(api: Api) -> None:
    """Paid at the gateway after the platform canceled, callback lost: credited to the buyer,
    the invoice stays CANCELED."""
    created = await api.checkout()
    invoice = created["invoice"]
    await api.platform("cancel", invoice_id=invoice)
    await pay_without_callback(api, created["xendit_invoice"])

    assert await reconcile(api) == Counter({"credited": 1})

    assert (await api.detail(invoice))["status"] == "CANCELED"
    assert (await api.balance(BUYER))["balance"] == TOTAL
    await api.assert_balanced()


async def test_an_invoice_expired_at_the_gateway_is_expired_by_reconcile(api: Api) -> None:
    """The gateway expired the payment (its callback lost): reconcile expires the PENDING
    invoice before its own expired_at; a second pass leaves it as it is."""
    created = await api.checkout()
    invoice = created["invoice"]
    await api.client.app[GATEWAY].expire(created["xendit_invoice"])

    assert await reconcile(api) == Counter({"expired": 1})

    assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    position = await head(api)
    assert await reconcile(api) == Counter({"unchanged": 1})
    assert await head(api) == position


async def test_balance_invoices_and_long_expired_ones_are_not_asked_about(
    api: Api, clock: FakeClock
) -> None:
    """A BALANCE invoice involves no gateway, and an invoice expired longer ago than the window
    is left alone: the gateway is not asked about either."""
    await api.top_up(BUYER, TOTAL)
    await api.checkout(source="BALANCE")
    old = await api.checkout()
    clock.advance(TTL + WINDOW.total_seconds() + 60)
    await api.wait_until_expired_in_view(old["invoice"])
    await pay_without_callback(api, old["xendit_invoice"])

    assert await reconcile(api) == Counter()


async def test_the_periodic_task_reconciles_on_its_own(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """With reconcile_interval_seconds set, a payment whose callback was lost is found without
    anyone asking, within a bounded time."""
    settings = dataclasses.replace(config, reconcile_interval_seconds=0.05)
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)
    created = await api.checkout()
    await pay_without_callback(api, created["xendit_invoice"])

    deadline = asyncio.get_running_loop().time() + 3.0
    while (await api.detail(created["invoice"]))["status"] != "PAID":
        assert asyncio.get_running_loop().time() < deadline, "not reconciled within 3 s"
        await asyncio.sleep(0.02)
    await api.assert_balanced()


# -- Xendit's adapter against the fake ---------------------------------------------------------


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
async def test_a_xendit_payment_whose_callback_was_lost_is_found_by_reconcile(
    xapi: Api, fake: FakeXendit, source: str
) -> None:
    """Paid at Xendit (an invoice, or a QR code), no callback: reconcile asks Xendit and pays
    the invoice with Xendit's payment id."""
    created = await xapi.checkout(source=source)
    invoice, reference = created["invoice"], created["xendit_invoice"]
    if source == "QRIS":
        fake.pay_qr(reference, payment_id="qrpy-lost-1")
        asked = f"/qr_codes/{reference}/payments"
    else:
        fake.pay(reference, payment_id="pay-lost-1")
        asked = f"/v2/invoices/{reference}"

    assert await reconcile(xapi) == Counter({"paid": 1})

    assert len(fake.requests_to("GET", asked)) == 1
    assert (await xapi.detail(invoice))["status"] == "PAID"
    events = await invoice_events(xapi, invoice)
    assert [kind for kind, _ in events] == ["InvoiceCreated", "InvoicePaid"]
    expected = "qrpy-lost-1" if source == "QRIS" else "pay-lost-1"
    assert events[1][1]["payment_id"] == expected
    await xapi.assert_balanced()


async def test_a_xendit_callback_then_reconcile_is_a_duplicate(xapi: Api, fake: FakeXendit) -> None:
    """Xendit's callback (built from the fake's paid invoice) pays the invoice; reconciling
    afterwards sees the same payment and changes nothing."""
    created = await xapi.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]
    paid = fake.pay(reference, payment_id="pay-cb-1")
    assert await send_invoice_callback(xapi, paid, "pay-cb-1") == (200, {"message": "PAID"})
    position = await head(xapi)

    assert await xapi.client.app[SERVICE].handle(Reconcile(invoice), RECONCILE) == "duplicate"

    assert await head(xapi) == position
    assert (await xapi.balance(BUYER))["balance"] == 0
    await xapi.assert_balanced()


async def test_an_invoice_expired_at_xendit_is_expired_by_reconcile(
    xapi: Api, fake: FakeXendit
) -> None:
    """Xendit expired the invoice on its own, callback lost: reconcile expires ours."""
    created = await xapi.checkout()
    fake.expire(created["xendit_invoice"])

    assert await reconcile(xapi) == Counter({"expired": 1})

    assert (await xapi.detail(created["invoice"]))["status"] == "EXPIRED"


async def test_a_xendit_payment_after_expiry_is_credited_to_the_buyer(
    xapi: Api, fake: FakeXendit, clock: FakeClock
) -> None:
    """Paid at Xendit after our invoice expired, callback lost: credited to the buyer."""
    created = await xapi.checkout()
    clock.advance(TTL + 1)
    await xapi.wait_until_expired_in_view(created["invoice"])
    fake.pay(created["xendit_invoice"])

    assert await reconcile(xapi) == Counter({"credited": 1})

    assert (await xapi.detail(created["invoice"]))["status"] == "EXPIRED"
    assert (await xapi.balance(BUYER))["balance"] == TOTAL
    await xapi.assert_balanced()


@pytest.mark.parametrize("failure", ["5xx", "down"])
async def test_reconcile_with_xendit_failing_counts_failed_and_changes_nothing(
    xapi: Api, fake: FakeXendit, failure: str
) -> None:
    """Xendit unreachable: every candidate counts as "failed", nothing is written; once it is
    back the payments are found."""
    first, second = await xapi.checkout(), await xapi.checkout(source="QRIS")
    fake.pay(first["xendit_invoice"])
    fake.pay_qr(second["xendit_invoice"])
    position = await head(xapi)
    if failure == "5xx":
        fake.fail_next(6, status=503)
    else:
        fake.down = True

    assert await reconcile(xapi) == Counter({"failed": 2})

    assert await head(xapi) == position
    fake.down = False
    assert await reconcile(xapi) == Counter({"paid": 2})


async def test_a_payment_of_the_wrong_amount_does_not_stop_the_others(
    xapi: Api, fake: FakeXendit
) -> None:
    """Xendit reports a paid amount that differs from one invoice: that invoice is refused
    (left PENDING, counted), and the other invoices are still reconciled."""
    wrong, right = await xapi.checkout(), await xapi.checkout()
    fake.pay(wrong["xendit_invoice"], amount=TOTAL - 1)
    fake.pay(right["xendit_invoice"])

    outcomes = await reconcile(xapi)

    assert sum(outcomes.values()) == 2
    assert outcomes["paid"] == 1
    assert (await xapi.detail(wrong["invoice"]))["status"] == "PENDING"
    assert (await xapi.detail(right["invoice"]))["status"] == "PAID"


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder to run the command line in, with a copy of the repository's config.yaml."""
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "config.yaml", folder / "config.yaml")
    return folder


async def run_reconcile(workdir: Path, database: str, **settings: str) -> tuple[int, str, str]:
    """``python -m service reconcile --db DATABASE`` with INVOICE_* ``settings``; returns the
    exit code, stdout and stderr."""
    env = environment()
    env.update({f"INVOICE_{name.upper()}": value for name, value in settings.items()})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "reconcile",
        "--db",
        database,
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def status_in(database: str, invoice: str) -> str:
    """The invoice's status in the database's view, read by a store of its own."""
    async with await open_store(database, projectors=projectors_for(database)) as store:
        rows = await views_query(
            store, "SELECT status FROM invoice_view WHERE invoice = ?", (invoice,)
        )
    status: str = rows[0][0]
    return status


async def test_the_reconcile_command_applies_a_payment_found_at_xendit(
    xapi: Api, fake: FakeXendit, workdir: Path
) -> None:
    """An invoice paid at Xendit with the callback lost, the service stopped: the command,
    configured for Xendit through the environment, asks it, pays the invoice, exits 0 and
    prints a summary."""
    created = await xapi.checkout()
    fake.pay(created["xendit_invoice"], payment_id="pay-cli-1")
    await xapi.client.close()
    fake.requests.clear()

    code, out, err = await run_reconcile(
        workdir,
        xapi.config.database,
        gateway="xendit",
        xendit_secret_key=SECRET_KEY,
        xendit_base_url=fake.url,
    )

    assert code == 0, (out, err)
    assert "reconciled 1 invoices: 1 paid" in out.splitlines(), out
    assert await status_in(xapi.config.database, created["invoice"]) == "PAID"
    assert len(fake.requests_to("GET", f"/v2/invoices/{created['xendit_invoice']}")) == 1
    assert SECRET_KEY not in out + err


async def test_the_reconcile_command_with_xendit_down_exits_1(
    xapi: Api, fake: FakeXendit, workdir: Path
) -> None:
    """Xendit unreachable: the command says how many failed, exits 1, and changes nothing."""
    created = await xapi.checkout()
    fake.pay(created["xendit_invoice"])
    await xapi.client.close()
    fake.down = True

    code, out, err = await run_reconcile(
        workdir,
        xapi.config.database,
        gateway="xendit",
        xendit_secret_key=SECRET_KEY,
        xendit_base_url=fake.url,
    )

    assert code == 1, (out, err)
    assert "reconciled 1 invoices: 1 failed" in out.splitlines(), out
    assert await status_in(xapi.config.database, created["invoice"]) == "PENDING"


async def test_the_reconcile_command_with_the_sandbox_can_only_report_pending(
    api: Api, workdir: Path
) -> None:
    """The sandbox remembers payments in the service's memory only: a separate command process
    starts with an empty sandbox, so it reports the invoice pending and changes nothing."""
    created = await api.checkout()
    await pay_without_callback(api, created["xendit_invoice"])
    assert isinstance(api.client.app[GATEWAY], SandboxGateway)
    await api.client.close()

    code, out, err = await run_reconcile(workdir, api.config.database)

    assert code == 0, (out, err)
    assert "reconciled 1 invoices: 1 pending" in out.splitlines(), out
    assert await status_in(api.config.database, created["invoice"]) == "PENDING"


async def test_a_late_payment_credited_by_callback_is_not_credited_again_by_reconcile(
    xapi: Api, fake: FakeXendit, clock: FakeClock
) -> None:
    """A late payment's callback credits the buyer; the invoice stays a reconcile candidate for
    the window, and reconciling it must find the same payment, not a second one, even when
    Xendit's invoice object does not name the payment id."""
    created = await xapi.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]
    clock.advance(TTL + 1)
    await xapi.wait_until_expired_in_view(invoice)
    paid = fake.pay(reference, payment_id="pay-late-cb", report_payment_id=False)
    assert await send_invoice_callback(xapi, paid, "pay-late-cb") == (
        200,
        {"message": "CREDITED"},
    )

    outcomes = await reconcile(xapi)

    assert outcomes == Counter({"duplicate": 1})
    assert (await xapi.balance(BUYER))["balance"] == TOTAL
    await xapi.assert_balanced()
