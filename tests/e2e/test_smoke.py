"""The whole story once: checkout, pay in the sandbox, done and cancel, balances."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import Api


async def test_checkout_pay_done_and_refund_leave_a_balanced_ledger(api: Api) -> None:
    """A two-store invoice: one store completed, one refunded; every account where it should be."""
    created = await api.checkout()
    invoice = created["invoice"]
    first, second = (t["invoice_onmarket"] for t in created["transaction"])

    await api.pay(created["xendit_invoice"])
    await api.platform("done", invoice_id=invoice, invoice_onmarket=first)
    refund = await api.platform(
        "cancel", invoice_id=invoice, invoice_onmarket=second, buyer_username="usernew1"
    )
    assert refund == {"message": "REFUND IN PROCESS"}
    for _ in range(100):
        if (await api.detail(invoice))["status"] == "COMPLETED":
            break
        await asyncio.sleep(0.02)

    detail = await api.detail(invoice)
    assert [t["status"] for t in detail["transaction"]] == ["COMPLETED", "REFUNDED"]
    assert (await api.balance("usernew1"))["balance"] == 25100
    assert (await api.balance("seller1"))["seller_balance"] == 10000 + 5000 - 1000
    assert await api.ledger_sum() == 0
