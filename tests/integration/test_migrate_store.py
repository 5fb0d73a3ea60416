"""``python -m service migrate-store SOURCE TARGET`` run as an operator would, on a database the
real app filled with invoices in every final state: the copy holds the same events (ids,
positions, times, hashes), verifies, has the same views, and a run cut short goes on; the
checkpoints of the jobs that follow the log move with it, so the webhook outbox does not send
old events to an endpoint registered after them."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventstore import NO_STREAM, NewEvent, open_store
from service.app import create_app
from service.config import load_config
from service.http.keys import CONFIG, STORE
from service.jobs import LOG_SUBSCRIPTIONS
from service.jobs.subscriptions import WEBHOOK_OUTBOX
from tests.credentials import basic, bearer
from tests.dumps import read_log, sqlite_view_rows
from tests.integration.api import Client, call, checkout_body
from tests.integration.cli import run_cli
from tests.integration.populated import BUYER, Clock, Populated
from tests.pgdb import fresh_database
from tests.webhook_receiver import Receiver


@pytest.fixture
def source(final_states_template: tuple[Path, Populated], tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    shutil.copy(final_states_template[0], path)
    return path


def test_the_copy_has_every_event_unchanged_and_the_same_views(
    source: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target.db"

    done = run_cli(tmp_path, "migrate-store", str(source), str(target))

    assert done.returncode == 0, done.stderr
    events = read_log(source)
    assert read_log(target) == events
    assert f"copied {len(events):,} events" in done.stdout
    assert f"verified: {len(events):,} events" in done.stdout
    assert "copying events" in done.stderr
    assert "rebuilding views" in done.stderr
    copied = sqlite_view_rows(target)
    assert copied["invoice_view"], "a rebuild that wrote nothing would differ"
    assert copied == sqlite_view_rows(source)
    assert run_cli(tmp_path, "verify", "--db", str(target)).returncode == 0


def test_a_run_cut_short_goes_on_from_where_it_stopped(source: Path, tmp_path: Path) -> None:
    events = read_log(source)
    target = tmp_path / "target.db"

    async def copy_half() -> None:
        async with await open_store(target) as store:
            await store.import_events(events[: len(events) // 2])

    asyncio.run(copy_half())

    done = run_cli(tmp_path, "migrate-store", str(source), str(target))

    assert done.returncode == 0, done.stderr
    assert f"resumed after position {len(events) // 2:,}" in done.stdout
    assert read_log(target) == events
    assert sqlite_view_rows(target) == sqlite_view_rows(source)
    moved = asyncio.run(checkpoints(str(target)))
    assert moved == asyncio.run(checkpoints(str(source)))
    assert moved[WEBHOOK_OUTBOX] > 0


def test_a_target_with_a_log_of_its_own_is_refused_untouched(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.db"

    async def write_own() -> None:
        async with await open_store(target) as store:
            await store.append("other", [NewEvent("E", {"n": 1})], NO_STREAM)

    asyncio.run(write_own())
    before = read_log(target)

    done = run_cli(tmp_path, "migrate-store", str(source), str(target))

    assert done.returncode == 2
    assert "not the start of the source's log" in done.stderr
    assert read_log(target) == before


@pytest.mark.parametrize(
    ("source_name", "target_name", "message"),
    [
        ("missing.db", "target.db", "does not exist"),
        ("source.db", "source.db", "the same store"),
        ("source.db", "nowhere/target.db", "does not exist"),
        ("source.db", "mysql://db/x", "mysql"),
    ],
)
def test_impossible_moves_are_refused_with_a_reason(
    source: Path, tmp_path: Path, source_name: str, target_name: str, message: str
) -> None:
    target = target_name if "://" in target_name else str(tmp_path / target_name)

    done = run_cli(tmp_path, "migrate-store", str(tmp_path / source_name), target)

    assert done.returncode == 2
    assert message in done.stderr


@asynccontextmanager
async def app_on(location: str) -> AsyncIterator[Client]:
    """The real app, with its background jobs, on the store at ``location``."""
    config = load_config(
        None, {}, database=location, log_level="WARNING", webhook_poll_interval_seconds=0.02
    )
    async with TestClient(TestServer(create_app(config, clock=Clock()))) as client:
        yield client


async def checkout(client: Client, number: str) -> str:
    """A new invoice's id; only after the outbox has passed its events (the checkpoint is what
    this test is about, so it must stand past them)."""
    config, clock = client.app[CONFIG], Clock()
    body = checkout_body("ONMARKET", "XENDIT", [number])
    answer = await call(
        client, "POST", "/payment-checkout", json=body, headers=bearer(config, clock, BUYER)
    )
    store = client.app[STORE]
    last = max([e.position async for e in store.read_all(0) if e.stream_id.startswith("invoice-")])

    async def passed() -> bool:
        return await store.load_checkpoint(WEBHOOK_OUTBOX) >= last

    await until(passed)
    invoice: str = answer["invoice"]
    return invoice


async def until(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def checkpoints(location: str) -> dict[str, int]:
    async with await open_store(location) as store:
        return {name: await store.load_checkpoint(name) for name in LOG_SUBSCRIPTIONS}


async def migrate(source: str, target: str, folder: Path) -> None:
    done = await asyncio.to_thread(run_cli, folder, "migrate-store", source, target)
    assert done.returncode == 0, done.stderr
    assert "checkpoints carried over: webhook-outbox at" in done.stdout


@pytest.mark.parametrize("route", ["sqlite", "postgresql", "postgresql and back"])
async def test_an_endpoint_registered_after_an_invoice_gets_nothing_of_it_after_a_move(
    tmp_path: Path, route: str
) -> None:
    """The outbox's checkpoint moves with the log: on the target it goes on from where it was,
    instead of from position 0 with today's endpoints (which did not exist, or did not select
    the old events, when those were processed)."""
    source = str(tmp_path / "source.db")
    async with Receiver() as receiver, fresh_database("migrate") as url:
        async with app_on(source) as client:
            await checkout(client, "MOVE-OLD")
            await call(
                client,
                "POST",
                "/webhooks/endpoints",
                201,
                json={"url": receiver.url, "event_types": ["invoice.created"]},
                headers=basic("onmarket"),
            )
        target = str(tmp_path / "target.db") if route == "sqlite" else url
        await migrate(source, target, tmp_path)
        if route == "postgresql and back":
            target = str(tmp_path / "back.db")
            await migrate(url, target, tmp_path)

        assert await checkpoints(target) == await checkpoints(source)
        assert (await checkpoints(target))[WEBHOOK_OUTBOX] > 0
        async with app_on(target) as client:
            new = await checkout(client, "MOVE-NEW")
            await receiver.wait_for(1)
            await asyncio.sleep(0.3)  # a message for the old invoice would be sent by now

    assert [d.json()["data"]["invoice"] for d in receiver.deliveries] == [new]
