"""POST /invoice/done/batch end to end: each item completed on its own exactly as /invoice/done
would, with the same answers, events and ledger postings; results in item order; the whole
request refused only for a malformed body or another platform; Idempotency-Key as on checkout.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from service.config import Config
from service.domain.streams import invoice_stream
from service.http.keys import STORE
from tests.e2e.conftest import Api, AppFactory, FakeClock
from tests.e2e.test_platform_actions import (
    BUYER,
    TTL,
    head,
    paid_invoice,
    refund,
    slow_refunds_api,
    store_total,
)
from tests.e2e.test_races import ROUNDS_TO_SEE_BOTH_SIDES

pytestmark = pytest.mark.backends("sqlite", "postgresql")

SUCCESS = ("success", None, "TRANSACTION IS COMPLETED")


def _rounds() -> int:
    if os.environ.get("RACE_ROUNDS"):
        return int(os.environ["RACE_ROUNDS"])
    return 1000 if os.environ.get("SOAK") == "1" else 200


# The race of a batch against single dones: 200 rounds in ``make test``, 1,000 in ``make soak``.
ROUNDS = _rounds()


async def batch(
    api: Api,
    items: list[dict[str, Any]],
    *,
    expect: int = 200,
    account: str = "onmarket",
    platform: str = "ONMARKET",
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response = await api.client.post(
        "/invoice/done/batch",
        json=body if body is not None else {"platform": platform, "items": items},
        headers={**api.basic(account), **(headers or {})},
    )
    answer: dict[str, Any] = await response.json()
    assert response.status == expect, answer
    return answer


def outcomes(answer: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(r["status"], r["code"], r["message"]) for r in answer["results"]]


def item(detail: dict[str, Any], index: int = 0, **extra: Any) -> dict[str, Any]:
    transaction = detail["transaction"][index]
    return {
        "invoice_id": detail["invoice"],
        "invoice_onmarket": transaction["invoice_onmarket"],
        **extra,
    }


async def test_each_item_answers_what_done_would_and_fails_alone(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """One batch with an item in every state: each answers /invoice/done's message and code,
    the refused ones change nothing, the good ones are completed, the ledger sums to zero."""
    api = await slow_refunds_api(aiohttp_client, config, clock)
    expired = await api.checkout()
    clock.advance(TTL + 1)
    pending = await api.detail((await api.checkout())["invoice"])
    canceled = await api.detail((await api.checkout())["invoice"])
    await api.platform("cancel", invoice_id=canceled["invoice"])
    completed = await paid_invoice(api)
    await api.platform("done", **item(completed))
    refunding = await paid_invoice(api)
    assert await refund(api, refunding["invoice"], refunding["transaction"][0]) == {
        "message": "REFUND IN PROCESS"
    }
    good = await paid_invoice(api)
    other_platform = await paid_invoice(api, service="ONDELIVERY")

    items = [
        item(good, 0),
        item(pending, 0),
        item(completed, 0),
        item(canceled, 0),
        item(refunding, 0),
        {"invoice_id": expired["invoice"], "invoice_onmarket": None},
        item(other_platform, 0),
        {"invoice_id": "OM0000000000000", "invoice_onmarket": "INV/ONM/T-1"},
        item(good, 1, amount=store_total(good["transaction"][1]) + 1),
        item(good, 1, amount=store_total(good["transaction"][1])),  # after the mismatch: done
    ]
    answer = await batch(api, items)

    assert [(r["invoice_id"], r["invoice_onmarket"]) for r in answer["results"]] == [
        (i["invoice_id"], i["invoice_onmarket"]) for i in items
    ]
    assert outcomes(answer) == [
        SUCCESS,
        ("failed", "TRANSACTION_NOT_PAID", "TRANSACTION IS NOT PAID"),
        ("failed", "TRANSACTION_ALREADY_COMPLETED", "TRANSACTION IS ALREADY COMPLETED"),
        ("failed", "TRANSACTION_ALREADY_CANCELED", "TRANSACTION IS ALREADY CANCELED"),
        ("failed", "REFUND_ALREADY_IN_PROCESS", "REFUND ALREADY IN PROCESS"),
        ("failed", "INVOICE_EXPIRED", "EXPIRED INVOICE"),
        ("failed", "FORBIDDEN", "Forbidden"),
        ("failed", "INVOICE_NOT_FOUND", "Invoice not found"),
        ("failed", "AMOUNT_MISMATCH", "AMOUNT DOES NOT MATCH THE TRANSACTION"),
        SUCCESS,
    ]
    assert [t["status"] for t in (await api.detail(good["invoice"]))["transaction"]] == [
        "COMPLETED",
        "COMPLETED",
    ]
    assert (await api.detail(pending["invoice"]))["status"] == "PENDING"
    assert (await api.detail(other_platform["invoice"]))["status"] == "PAID"
    refunding_now = await api.detail(refunding["invoice"])
    assert refunding_now["transaction"][0]["status"] == "REFUND_IN_PROCESS"
    await api.assert_balanced()


async def test_a_duplicate_item_succeeds_once(api: Api) -> None:
    """The same transaction twice in one batch: exactly one success, the other ALREADY
    COMPLETED, and the seller is paid once."""
    for _ in range(5):
        detail = await paid_invoice(api, stores=1)
        before = await api.accounts()
        answer = await batch(api, [item(detail), item(detail)])
        assert sorted(outcomes(answer), key=str) == sorted(
            [
                SUCCESS,
                ("failed", "TRANSACTION_ALREADY_COMPLETED", "TRANSACTION IS ALREADY COMPLETED"),
            ],
            key=str,
        )
        after = await api.accounts()
        assert after["seller:seller1"] - before.get("seller:seller1", 0) == 14000
        await api.assert_balanced()


async def completions(api: Api, invoice: str) -> list[tuple[str, dict[str, Any]]]:
    """The events after the invoice's payment, as type and data, without its own names."""
    assert api.client.app is not None
    stream = api.client.app[STORE].read_stream(invoice_stream(invoice))
    events = [(recorded.type, recorded.data) async for recorded in stream]
    assert [kind for kind, _ in events[:2]] == ["InvoiceCreated", "InvoicePaid"]
    own = ("invoice", "invoice_onmarket")
    return [(kind, {k: v for k, v in data.items() if k not in own}) for kind, data in events[2:]]


async def test_a_batch_posts_and_records_exactly_what_single_dones_do(api: Api) -> None:
    """Two like invoices, one completed by single dones and one by a batch: the same events
    and the same postings on every account, and the ledger sums to zero."""
    single, batched = await paid_invoice(api), await paid_invoice(api)
    start = await api.accounts()
    for index in range(2):
        await api.platform("done", **item(single, index))
    by_single = await api.accounts()
    answer = await batch(api, [item(batched, 0), item(batched, 1)])
    assert outcomes(answer) == [SUCCESS, SUCCESS]
    by_batch = await api.accounts()

    def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        """Each account's change, escrows left out (each invoice has its own)."""
        names = {n for n in (*before, *after) if not n.startswith("escrow:")}
        return {n: after.get(n, 0) - before.get(n, 0) for n in names}

    assert moved(by_single, by_batch) == moved(start, by_single)
    assert moved(start, by_single)["seller:seller1"] == 14000
    assert not [a for a in by_batch if a.startswith("escrow:")]  # both escrows emptied
    assert await completions(api, batched["invoice"]) == await completions(api, single["invoice"])
    await api.assert_balanced()


async def test_a_body_platform_not_the_callers_is_403_for_the_whole_batch(api: Api) -> None:
    """platform ONDELIVERY sent by onmarket: 403 FORBIDDEN, nothing completed; a buyer's or an
    admin's credentials likewise."""
    detail = await paid_invoice(api, stores=1)
    before = await head(api)
    answer = await batch(api, [item(detail)], platform="ONDELIVERY", expect=403)
    assert answer["code"] == "FORBIDDEN"
    for account in ("admin", BUYER):
        assert (await batch(api, [item(detail)], account=account, expect=403))["code"] == (
            "FORBIDDEN"
        )
    assert (await batch(api, [item(detail)], account="nobody", expect=401))["code"] == "AUTH_ERROR"
    assert await head(api) == before
    assert (await api.detail(detail["invoice"]))["status"] == "PAID"


async def test_a_malformed_batch_is_400_whole(api: Api) -> None:
    """0 or 101 items, a bad item, an unknown field, a non-integer amount: 400 VALIDATION,
    and nothing is completed, not even the good items."""
    detail = await paid_invoice(api, stores=1)
    good = item(detail)
    before = await head(api)
    bodies: list[dict[str, Any]] = [
        {"platform": "ONMARKET", "items": []},
        {"platform": "ONMARKET", "items": [good] * 101},
        {"platform": "ONMARKET", "items": [good, {"invoice_onmarket": "x"}]},
        {"platform": "ONMARKET", "items": [good, {**good, "amount": "15100"}]},
        {"platform": "ONMARKET", "items": [good, {**good, "amount": -1}]},
        {"platform": "ONMARKET", "items": [{**good, "extra": 1}]},
        {"platform": "ONMARKET", "items": good},
        {"items": [good]},
    ]
    for body in bodies:
        answer = await batch(api, [], body=body, expect=400)
        assert answer["code"] == "VALIDATION", body
    assert await head(api) == before
    assert (await api.detail(detail["invoice"]))["status"] == "PAID"
    answer = await batch(api, [good] * 100)  # 100 is allowed
    assert len(answer["results"]) == 100
    assert sum(r["status"] == "success" for r in answer["results"]) == 1


async def test_an_idempotent_retry_answers_the_first_answer_and_changes_nothing(
    api: Api,
) -> None:
    """The same Idempotency-Key and body again: the first answer (successes included), no new
    event; the same key with another body: 409 IDEMPOTENCY_KEY_REUSED."""
    detail = await paid_invoice(api)
    key = {"Idempotency-Key": "batch-1"}
    items = [item(detail, 0), item(detail, 1, amount=1)]
    first = await batch(api, items, headers=key)
    assert outcomes(first) == [
        SUCCESS,
        ("failed", "AMOUNT_MISMATCH", "AMOUNT DOES NOT MATCH THE TRANSACTION"),
    ]
    before, accounts = await head(api), await api.accounts()
    assert await batch(api, items, headers=key) == first
    assert (await head(api), await api.accounts()) == (before, accounts)

    reused = await batch(api, [item(detail, 1)], headers=key, expect=409)
    assert reused["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await head(api) == before
    # Without the key, a repeat is a new request: the completed item is ALREADY COMPLETED.
    again = await batch(api, items)
    assert outcomes(again)[0][1] == "TRANSACTION_ALREADY_COMPLETED"
    await api.assert_balanced()


async def test_a_batch_racing_single_dones_of_its_transactions_completes_each_once(
    api: Api,
) -> None:
    """A batch and single dones of the same two transactions, sent at once, ROUNDS times:
    each transaction has exactly one winner, the loser ALREADY COMPLETED; the seller is paid
    once per transaction and the ledger sums to zero."""
    await api.platform("done", expect=403, invoice_id="warm-up")  # scrypt once, before racing
    batch_wins = 0
    for _ in range(ROUNDS):
        detail = await paid_invoice(api, stores=2)
        items = [item(detail, 0), item(detail, 1)]
        before = await api.accounts()
        batched, *singles = await asyncio.gather(
            batch(api, items),
            *(
                api.client.post(
                    "/invoice/done",
                    json={"platform": "ONMARKET", **one},
                    headers=api.basic("onmarket"),
                )
                for one in items
            ),
        )
        for result, single in zip(batched["results"], singles, strict=True):
            answer = await single.json()
            won_single = single.status == 200
            assert (result["status"] == "success") != won_single, (result, answer)
            loser = answer if result["status"] == "success" else result
            assert loser["code"] == "TRANSACTION_ALREADY_COMPLETED"
            batch_wins += result["status"] == "success"
        after = await api.accounts()
        paid = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        assert paid["seller:seller1"] + paid["seller:seller2"] == 14000 + 24000
        await api.assert_balanced()
    assert batch_wins > 0 or ROUNDS < ROUNDS_TO_SEE_BOTH_SIDES


async def test_twin_batches_with_one_key_sent_at_once_answer_alike(api: Api) -> None:
    """The same keyed batch sent twice at once: both get the same answer (the one recorded
    first), and each transaction is completed once."""
    for round_ in range(10):
        detail = await paid_invoice(api)
        key = {"Idempotency-Key": f"twin-{round_}"}
        items = [item(detail, 0), item(detail, 1)]
        before = await api.accounts()
        first, second = await asyncio.gather(
            batch(api, items, headers=key), batch(api, items, headers=key)
        )
        assert first == second
        assert await batch(api, items, headers=key) == first
        after = await api.accounts()
        assert after["seller:seller1"] - before.get("seller:seller1", 0) == 14000
        assert after["seller:seller2"] - before.get("seller:seller2", 0) == 24000
        await api.assert_balanced()
