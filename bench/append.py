"""Append throughput: the event store's group commit against two baselines, in one run.

All three write the same events (checkout-sized JSON, hash-chained, one new stream each, in the
same interleaved order) with synchronous=FULL, so every acknowledged event has been fsync'd:

  (a) raw sqlite3: the minimal synchronous program writing that log, 10 events a transaction
      (encode, chain the hashes, one executemany, commit);
  (b) a naive aiosqlite append: one transaction per event, one awaited statement at a time
      (check the stream's version, read the log's head for the hash chain, insert, commit);
  (c) EventStore.append called by N concurrent tasks (64 by default), single events.

Targets: (c) >= 0.5 x (a) and (c) >= 10 x (b). The exit status is 1 if a target is missed.
Each figure is the best of --rounds rounds, the three measured in turn within each round, so
that a machine's drifting speed affects them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from eventstore import NO_STREAM, EventStore, NewEvent
from eventstore.records import GENESIS_HASH, chain_hash, format_time, to_json
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.schema import EVENT_COLUMNS, EVENTSTORE_MIGRATIONS, apply_migrations

TARGET_VS_RAW = 0.5
TARGET_VS_NAIVE = 10.0


def sample_event(i: int) -> NewEvent:
    """A checkout-sized event: what the service appends most."""
    return NewEvent(
        type="InvoiceCreated",
        data={
            "invoice": f"OM{i:013d}",
            "username": f"buyer{i % 1000}",
            "total_amount": 40200,
            "transactions": [
                {"invoice_onmarket": f"INV/ONM/{i}-1", "amount": 10000, "freight_charge": 5000},
                {"invoice_onmarket": f"INV/ONM/{i}-2", "amount": 20000, "freight_charge": 5000},
            ],
        },
        metadata={"actor": "usernew1", "request_id": str(uuid.uuid4())},
    )


def stream_of(k: int, tasks: int) -> str:
    """The stream of the k-th event committed: the tasks' appends interleave, task by task."""
    return f"invoice-{k % tasks}-{k // tasks}"


def encode_rows(
    events: list[NewEvent], tasks: int, previous: str = GENESIS_HASH, first_position: int = 1
) -> list[tuple[object, ...]]:
    """The rows the store writes for ``events``, in its commit order, hash-chained."""
    rows: list[tuple[object, ...]] = []
    now = format_time(datetime.now(UTC))
    for k, event in enumerate(events):
        row = (
            first_position + k,
            event.event_id,
            stream_of(first_position - 1 + k, tasks),
            1,
            event.type,
            to_json(event.data, "data"),
            to_json(event.metadata, "metadata"),
            now,
        )
        previous = chain_hash(previous, row)
        rows.append((*row, previous))
    return rows


def fresh_schema(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    apply_migrations(conn, "eventstore", EVENTSTORE_MIGRATIONS)
    conn.close()


INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def bench_raw_batched(path: Path, total: int, tasks: int, per_txn: int = 10) -> float:
    """The minimal synchronous program writing the same log: for every 10 events, encode them,
    chain their hashes, insert them with one executemany, commit."""
    fresh_schema(path)
    events = [sample_event(k) for k in range(total)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    started = time.perf_counter()
    previous = GENESIS_HASH
    for start in range(0, total, per_txn):
        rows = encode_rows(events[start : start + per_txn], tasks, previous, start + 1)
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
        previous = str(rows[-1][-1])
    elapsed = time.perf_counter() - started
    conn.close()
    return total / elapsed


async def bench_naive(path: Path, total: int, tasks: int) -> float:
    """The same append, done naively: one transaction and one awaited statement at a time.

    Like EventStore.append it checks the stream's version, chains the hash to the log's head and
    stores canonical JSON; unlike it, each event pays for its own round trips and its own fsync.
    """
    fresh_schema(path)
    events = [sample_event(i) for i in range(total)]
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await conn.execute("PRAGMA synchronous = FULL")
        started = time.perf_counter()
        for i, event in enumerate(events):
            stream_id = stream_of(i, tasks)
            await conn.execute("BEGIN IMMEDIATE")
            ((version,),) = await conn.execute_fetchall(
                "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,)
            )
            assert version is None, "the stream is new"
            head = await conn.execute_fetchall(
                "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
            )
            position, previous = next(iter(head), (0, GENESIS_HASH))
            row = (
                position + 1,
                event.event_id,
                stream_id,
                1,
                event.type,
                to_json(event.data, "data"),
                to_json(event.metadata, "metadata"),
                format_time(datetime.now(UTC)),
            )
            await conn.execute(INSERT, (*row, chain_hash(previous, row)))
            await conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    return total / elapsed


async def bench_store(path: Path, total: int, tasks: int) -> float:
    events = [sample_event(k) for k in range(total - total % tasks)]

    async def worker(t: int, store: EventStore) -> None:
        for k in range(t, len(events), tasks):
            await store.append(stream_of(k, tasks), [events[k]], NO_STREAM)

    async with await SQLiteEventStore.open(path, synchronous="FULL") as store:
        started = time.perf_counter()
        await asyncio.gather(*(worker(t, store) for t in range(tasks)))
        elapsed = time.perf_counter() - started
        report = await store.verify()
        if not report.ok or report.events_checked != len(events):
            raise RuntimeError(f"the benchmark's log does not verify: {report}")
    return len(events) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="events per measurement")
    parser.add_argument("--naive-events", type=int, default=4_000)
    parser.add_argument("--tasks", type=int, default=64, help="concurrent appending tasks")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-append-") as tmp:
        folder = Path(tmp)
        raw, naive, store = [], [], []
        for round_ in range(args.rounds):
            raw.append(bench_raw_batched(folder / f"raw{round_}.db", args.events, args.tasks))
            naive.append(
                asyncio.run(
                    bench_naive(folder / f"naive{round_}.db", args.naive_events, args.tasks)
                )
            )
            store.append(
                asyncio.run(bench_store(folder / f"store{round_}.db", args.events, args.tasks))
            )
    best_raw, best_naive, best_store = max(raw), max(naive), max(store)
    vs_raw, vs_naive = best_store / best_raw, best_store / best_naive
    print(f"append benchmark, synchronous=FULL, best of {args.rounds} rounds")
    print(f"  (a) raw sqlite3, 10 events/txn        {best_raw:>10,.0f} events/s")
    print(f"  (b) naive aiosqlite append, 1/txn      {best_naive:>10,.0f} events/s")
    print(f"  (c) EventStore, {args.tasks} tasks, group commit {best_store:>8,.0f} events/s")
    print(f"  ratio c/a = {vs_raw:.2f} (target >= {TARGET_VS_RAW})")
    print(f"  ratio c/b = {vs_naive:.1f} (target >= {TARGET_VS_NAIVE})")
    met = vs_raw >= TARGET_VS_RAW and vs_naive >= TARGET_VS_NAIVE
    print("  targets met" if met else "  TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
