"""GET /metrics end to end: parsed with prometheus-client's own parser, its counters move with
each domain outcome as it is committed (whichever way it came), request durations are labelled
by route template (never an id), and the optional bearer token guards it."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.config import Config
from tests.e2e.conftest import ROLES, Api, AppFactory, FakeClock
from tests.e2e.test_webhooks import quick_webhooks, register
from tests.webhook_receiver import Receiver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REFERENCE, REASON = "BANK-TRF-1", "paid at the branch"


async def scrape(api: Api, headers: dict[str, str] | None = None) -> Samples:
    response = await api.client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(await response.text())


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples) -> dict[tuple[str, frozenset[Any]], float]:
    """The domain counters that moved, by how much (``*_total`` samples only)."""
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].endswith("_total")
        and not key[0].startswith(("http_", "python_", "process_"))
        and after[key] != before.get(key, 0.0)
    }


def counter(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (f"{name}_total", frozenset(labels.items()))


async def test_each_domain_outcome_moves_its_counter_once(api: Api) -> None:
    """Checkouts of each source, a payment, a mark-paid, an expiry, a cancel, a done, a refund,
    a late payment and a replayed request: each counted once, nothing else moves."""
    samples = await scrape(api)
    steps: list[tuple[Any, dict[Any, float]]] = []

    async def step(action: Any, expected: dict[Any, float]) -> Any:
        nonlocal samples
        result = await action()
        # The refund worker and the expiry task write on their own: wait for them.
        for _ in range(200):
            after = await scrape(api)
            if moved(samples, after) == expected:
                break
            await asyncio.sleep(0.01)
        assert moved(samples, after) == expected, action
        samples = after
        steps.append((action, expected))
        return result

    xendit = await step(
        lambda: api.checkout(source="XENDIT"), {counter("invoices_created", source="XENDIT"): 1}
    )
    await step(lambda: api.checkout(source="QRIS"), {counter("invoices_created", source="QRIS"): 1})
    await api.top_up("usernew1", 10**7)
    await step(
        lambda: api.checkout(source="BALANCE"),
        {
            counter("invoices_created", source="BALANCE"): 1,
            counter("invoices_paid", channel="BALANCE"): 1,
        },
    )
    paid = await step(
        lambda: api.pay(xendit["xendit_invoice"]), {counter("invoices_paid", channel="SANDBOX"): 1}
    )
    assert paid["callback"]["body"] == {"message": "PAID"}
    detail = await api.detail(xendit["invoice"])
    first, second = detail["transaction"]
    await step(
        lambda: api.platform(
            "done",
            invoice_id=xendit["invoice"],
            invoice_onmarket=first["invoice_onmarket"],
        ),
        {counter("transactions_completed"): 1},
    )
    await step(
        lambda: api.platform(
            "cancel",
            invoice_id=xendit["invoice"],
            invoice_onmarket=second["invoice_onmarket"],
            buyer_username="usernew1",
        ),
        # The last transaction settled, one of the two paid out: the invoice is COMPLETED.
        {
            counter("refunds_requested"): 1,
            counter("refunds_completed"): 1,
            counter("invoices_completed"): 1,
        },
    )
    to_mark = await api.checkout()
    samples = await scrape(api)
    await step(
        lambda: api.platform(
            "mark-paid", invoice_id=to_mark["invoice"], reference=REFERENCE, reason=REASON
        ),
        {counter("invoices_paid", channel="MANUAL"): 1},
    )
    # A gateway payment of the invoice marked paid comes too late: credited to the buyer.
    late = await step(
        lambda: api.pay(to_mark["xendit_invoice"], expect=200),
        {counter("late_payments"): 1},
    )
    assert late["callback"]["body"] == {"message": "CREDITED"}
    to_cancel = await api.checkout()
    samples = await scrape(api)
    await step(
        lambda: api.platform("cancel", invoice_id=to_cancel["invoice"]),
        {counter("invoices_canceled"): 1},
    )
    to_expire = await api.checkout()
    samples = await scrape(api)

    async def expire() -> None:
        api.clock.advance(3 * 3600)

    # Two invoices are still PENDING: the QRIS one never paid, and this one.
    await step(expire, {counter("invoices_expired"): 2})
    body_key = {"Idempotency-Key": "metrics-replay-1"}
    await api.checkout(headers=body_key, invoice_onmarket=["INV/ONM/METRICS-1"])
    samples = await scrape(api)
    await step(
        lambda: api.checkout(headers=body_key, invoice_onmarket=["INV/ONM/METRICS-1"]),
        {counter("idempotent_replays"): 1},
    )
    assert to_expire["invoice"]


async def test_labels_hold_route_templates_never_ids_or_usernames(api: Api) -> None:
    """Requests by invoice id, by reference in the path, to unknown paths: the histogram's
    route label is the template or "unmatched"; no label value is an id or a username."""
    created = await api.checkout()
    await api.detail(created["invoice"])
    await api.pay(created["xendit_invoice"])
    response = await api.client.get(f"/no/such/{created['invoice']}")
    assert response.status == 404
    samples = await scrape(api)
    routes = {
        dict(labels)["route"]
        for name, labels in samples
        if name.startswith("http_request_duration_seconds")
    }
    assert {
        "/payment-checkout",
        "/invoice/detail",
        "/sandbox/invoices/{reference}/pay",
        "unmatched",
    } <= routes
    secrets = {created["invoice"], created["xendit_invoice"], *ROLES}
    for name, labels in samples:
        for label, text in labels:
            assert not any(secret in text for secret in secrets), (name, label, text)
    count = value(
        samples,
        "http_request_duration_seconds_count",
        method="GET",
        route="/invoice/detail",
        status="200",
    )
    assert count == 1


async def test_gauges_show_the_head_position_batches_and_refund_backlog(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """The log's head as /health tells it, group commits observed, a refund waiting counted."""
    slow = dataclasses.replace(config, refund_delay_seconds=3600)
    api = Api(await aiohttp_client(create_app(slow, clock=clock)), slow, clock)
    created = await api.checkout()
    await api.pay(created["xendit_invoice"])
    detail = await api.detail(created["invoice"])
    line = detail["transaction"][0]
    await api.platform(
        "cancel",
        invoice_id=created["invoice"],
        invoice_onmarket=line["invoice_onmarket"],
        buyer_username="usernew1",
    )
    samples = await scrape(api)
    health = await (await api.client.get("/health")).json()
    assert value(samples, "eventstore_head_position") == health["head_position"]
    assert value(samples, "refund_backlog") == 1
    assert value(samples, "eventstore_append_batch_size_count") >= 3
    assert value(samples, "webhook_pending_messages") == 0  # no webhook endpoint


async def test_a_metrics_token_guards_the_endpoint(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """With metrics_token set: 401 without it or with another, 200 with it."""
    token = "scrape-secret-0123456789"
    guarded = dataclasses.replace(config, metrics_token=token)
    api = Api(await aiohttp_client(create_app(guarded, clock=clock)), guarded, clock)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        response = await api.client.get("/metrics", headers=headers)
        assert response.status == 401
        assert await response.json() == {"message": "Auth Error", "code": "AUTH_ERROR"}
    samples = await scrape(api, {"Authorization": f"Bearer {token}"})
    assert ("eventstore_head_position", frozenset()) in samples


async def test_metrics_off_records_no_request_durations(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """The setting ``metrics: false`` (the benchmark's baseline) observes no request."""
    off = dataclasses.replace(config, metrics=False)
    api = Api(await aiohttp_client(create_app(off, clock=clock)), off, clock)
    await api.checkout()
    samples = await scrape(api)
    assert not [name for name, _ in samples if name.startswith("http_request_duration")]
    assert value(samples, "invoices_created_total", source="XENDIT") == 1


async def test_the_grafana_dashboard_asks_only_for_metrics_the_service_exports(api: Api) -> None:
    """Every series docs/grafana-dashboard.json queries is in a scrape (after one of each
    request kind), so the dashboard cannot silently show nothing."""
    # A labelled counter has no series before its first count: pay one invoice.
    await api.pay((await api.checkout())["xendit_invoice"])
    samples = await scrape(api)
    exported = {name for name, _ in samples}
    dashboard = orjson.loads(
        (Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text()
    )
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 15
    promql = {"sum", "by", "rate", "histogram_quantile", "max", "deriv", "le", "route", "source"}
    promql |= {"channel", "status", "outcome", "__rate_interval"}
    used = {
        name
        for expression in expressions
        for name in re.findall(r"[a-z_]+(?=[{\[)])", expression)
        if name not in promql
    }
    assert used, expressions
    assert used <= exported, used - exported


@pytest.mark.backends("sqlite", "postgresql")
async def test_webhook_deliveries_by_outcome_and_the_backlog(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Three endpoints get one checkout's message: one answers 200 (delivered), one 500 (to be
    retried in an hour: still pending), one 410 (failed). Each outcome counted once; the one
    pending message shows in the backlog gauges, its age on the app's clock."""
    settings = quick_webhooks(config, schedule="0,3600")
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)
    before = await scrape(api)
    assert value(before, "webhook_deliveries_total", outcome="delivered") == 0  # a series
    expected = {
        counter("webhook_deliveries", outcome=outcome): 1
        for outcome in ("delivered", "retrying", "failed")
    }
    async with Receiver() as ok, Receiver(status=500) as flaky, Receiver(status=410) as gone:
        for receiver in (ok, flaky, gone):
            await register(api, receiver.url, event_types=["invoice.created"])
        await api.checkout()
        for _ in range(500):  # the sender counts once it has recorded each attempt
            after = await scrape(api)
            deliveries = {
                key: count
                for key, count in moved(before, after).items()
                if key[0] == "webhook_deliveries_total"
            }
            # A scrape reads the backlog from the views first and the counters last: an attempt
            # recorded in between is counted while the gauge still shows its message pending.
            if deliveries == expected and value(after, "webhook_pending_messages") == 1:
                break
            await asyncio.sleep(0.01)
        assert deliveries == expected
        assert value(after, "webhook_pending_messages") == 1
        clock.advance(120)
        later = await scrape(api)
    assert value(later, "webhook_pending_messages") == 1
    assert value(later, "webhook_oldest_pending_age_seconds") == 120
    assert moved(after, later) == {}  # no retry within the hour, nothing else moved
