"""The senders' claims on PostgreSQL (``service.webhooks.claims``): concurrent claimers share the
due messages without overlap; a live claim holds, an expired or released one can be taken.

The messages are real ones: their events appended to a store on a fresh database, its webhook
view kept by the store's own projector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from eventstore import NO_STREAM
from eventstore.postgresql import PostgreSQLEventStore
from service.domain.webhook_events import WebhookEndpointCreated, WebhookMessageQueued
from service.records import encode
from service.storage.postgresql.views_check import compare_views_with_replay
from service.views.postgresql import all_projectors
from service.webhooks.claims import PostgreSQLClaims, claim_lease
from tests.pgdb import fresh_database

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
MESSAGES = 40


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_database("claims") as made:
        yield made


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgreSQLEventStore]:
    """A store on a fresh database holding one endpoint and ``MESSAGES`` messages due at NOW."""
    opened = await PostgreSQLEventStore.open(url, projectors=all_projectors())
    try:
        await _queue_messages(opened)
        yield opened
    finally:
        await opened.close()


async def _queue_messages(store: PostgreSQLEventStore) -> None:
    created = WebhookEndpointCreated(
        "ep_1", "ONMARKET", "https://example.com/hook", ("invoice.created",), "", "x", "a", NOW
    )
    await store.append("webhook-endpoint-ep_1", [encode(created, {})], NO_STREAM)
    for number in range(MESSAGES):
        queued = WebhookMessageQueued(
            f"msg_{number:03}", "ep_1", "ONMARKET", f"inv_{number}", "invoice.created", "{}", 1, NOW
        )
        await store.append(f"webhook-message-msg_{number:03}", [encode(queued, {})], NO_STREAM)


def claimer(store: PostgreSQLEventStore, name: str) -> PostgreSQLClaims:
    return PostgreSQLClaims(store.pool, lease=LEASE, claimant=name)


async def test_concurrent_claimers_share_the_due_messages_without_overlap(
    store: PostgreSQLEventStore,
) -> None:
    """Two claimers asking at once, round after round, get disjoint sets whose union is every
    due message; nothing is left to a third once all are claimed."""
    a, b = claimer(store, "a"), claimer(store, "b")
    taken: dict[str, list[str]] = {"a": [], "b": []}
    for _ in range(6):
        got_a, got_b = await asyncio.gather(a.take(NOW, 4, ()), b.take(NOW, 4, ()))
        assert not set(got_a) & set(got_b)
        taken["a"] += got_a
        taken["b"] += got_b
    while True:  # what the rounds left, again two at a time
        got_a, got_b = await asyncio.gather(a.take(NOW, 7, ()), b.take(NOW, 7, ()))
        if not got_a and not got_b:
            break
        taken["a"] += got_a
        taken["b"] += got_b

    every = taken["a"] + taken["b"]
    assert len(every) == len(set(every)) == MESSAGES
    assert set(every) == {f"msg_{n:03}" for n in range(MESSAGES)}
    assert taken["a"]
    assert taken["b"]
    assert await claimer(store, "c").take(NOW, MESSAGES, ()) == []


async def test_a_live_claim_holds_and_an_expired_one_can_be_taken(
    store: PostgreSQLEventStore,
) -> None:
    a, b = claimer(store, "a"), claimer(store, "b")
    first = await a.take(NOW, 1, ())
    assert first == ["msg_000"]  # the oldest due first

    assert "msg_000" not in await b.take(NOW + LEASE - timedelta(seconds=1), MESSAGES, ())
    assert await b.take(NOW + LEASE + timedelta(seconds=1), MESSAGES, ()) == ["msg_000"]


async def test_a_released_claim_can_be_taken_and_only_its_holder_releases_it(
    store: PostgreSQLEventStore,
) -> None:
    a, b = claimer(store, "a"), claimer(store, "b")
    assert await a.take(NOW, 1, ()) == ["msg_000"]
    await b.release("msg_000")  # not b's: nothing happens
    assert "msg_000" not in await b.take(NOW, 1, ())

    await a.release("msg_000")
    assert await claimer(store, "c").take(NOW, 1, ()) == ["msg_000"]


async def test_busy_messages_and_messages_not_yet_due_are_not_claimed(
    store: PostgreSQLEventStore,
) -> None:
    a = claimer(store, "a")
    assert await a.take(NOW - timedelta(seconds=1), MESSAGES, ()) == []
    got = await a.take(NOW, 3, ["msg_000", "msg_001"])
    assert got == ["msg_002", "msg_003", "msg_004"]


async def test_claims_are_not_views_a_rebuild_keeps_them_and_verify_ignores_them(
    store: PostgreSQLEventStore, url: str
) -> None:
    """``webhook_claims`` is coordination state: a rebuild of the views neither empties it nor
    trips over it, and the views-equal-a-replay check passes with claims held."""
    a, b = claimer(store, "a"), claimer(store, "b")
    assert await a.take(NOW, 1, ()) == ["msg_000"]
    await store.rebuild_projections()
    assert "msg_000" not in await b.take(NOW, MESSAGES, ())
    assert await compare_views_with_replay(url) == []


def test_a_claim_outlasts_both_tries_of_a_send() -> None:
    """A claim must not run out while its sender may still be sending: two tries of
    ``timeout`` (a closed kept-alive connection is tried again) and a margin."""
    assert claim_lease(15.0) > timedelta(seconds=30)
