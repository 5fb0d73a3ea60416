"""Append throughput on PostgreSQL: the store's group commit against two baselines, in one run.

All three write the same events (checkout-sized JSON, hash-chained, one new stream each, in the
same interleaved order) to a fresh database each, with the server's default durability
(synchronous_commit on: every acknowledged event has been flushed to the WAL):

  (a) minimal asyncpg: one connection writing the log 10 events a transaction, under the same
      advisory lock, with one ``INSERT … SELECT FROM unnest(…)`` (hashes chained in Python);
  (b) a naive asyncpg append: one transaction per event, one awaited statement at a time
      (check the stream's version, take the lock, read the log's head, insert, commit);
  (c) PostgreSQLEventStore.append called by N concurrent tasks (64 by default), single events.

Targets: (c) >= 0.5 x (a) and (c) >= 5 x (b); the exit status is 1 if one is missed. Each figure
is the best of --rounds rounds, the three measured in turn within each round.

It also measures how long an append holds the log's lock (from the locked call to the end of
the commit, on one connection with nobody else writing): one database commits at most one
transaction per hold time, whatever the number of processes and nodes, so 1 / hold time is the
ceiling in transactions per second, times the events a transaction carries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from bench.append import sample_event, stream_of
from eventstore import NO_STREAM, NewEvent
from eventstore.postgresql import PostgreSQLEventStore
from eventstore.postgresql.schema import (
    APPEND_LOCK,
    EVENT_COLUMNS,
    EVENTSTORE_MIGRATIONS,
    apply_migrations,
)
from eventstore.records import GENESIS_HASH, chain_hash, format_time, to_json

TARGET_VS_MINIMAL = 0.5
TARGET_VS_NAIVE = 5.0
ADMIN_URL = os.environ.get("INVOICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

INSERT_UNNEST = (
    f"INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[],"
    " $3::text[], $4::integer[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
)


class Database:
    """A fresh database with the store's schema, dropped on exit."""

    def __init__(self) -> None:
        self.name = f"bench_{uuid.uuid4().hex}"
        self.url = f"{ADMIN_URL.rpartition('/')[0]}/{self.name}"

    async def __aenter__(self) -> Database:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f"CREATE DATABASE {self.name}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.url)
        try:
            await apply_migrations(conn, "eventstore", EVENTSTORE_MIGRATIONS)
        finally:
            await conn.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f"DROP DATABASE {self.name} WITH (FORCE)")
        finally:
            await admin.close()


def encode(event: NewEvent, position: int, stream: str, now: str) -> tuple[object, ...]:
    return (
        position,
        event.event_id,
        stream,
        1,
        event.type,
        to_json(event.data, "data"),
        to_json(event.metadata, "metadata"),
        now,
    )


async def bench_minimal(total: int, tasks: int, per_txn: int = 10) -> float:
    """The minimal program: for every 10 events, encode them, chain their hashes, and insert
    them with one statement under the lock."""
    events = [sample_event(k) for k in range(total)]
    async with Database() as db:
        conn = await asyncpg.connect(db.url)
        started = time.perf_counter()
        previous = GENESIS_HASH
        for start in range(0, total, per_txn):
            now = format_time(datetime.now(UTC))
            rows = []
            for k in range(start, min(start + per_txn, total)):
                row = encode(events[k], k + 1, stream_of(k, tasks), now)
                previous = chain_hash(previous, row)
                rows.append((*row, previous))
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
                await conn.execute(
                    INSERT_UNNEST, *(list(column) for column in zip(*rows, strict=True))
                )
        elapsed = time.perf_counter() - started
        await conn.close()
    return total / elapsed


async def bench_naive(total: int, tasks: int) -> float:
    """The same append done naively: a transaction per event, one statement at a time."""
    events = [sample_event(k) for k in range(total)]
    async with Database() as db:
        conn = await asyncpg.connect(db.url)
        started = time.perf_counter()
        for k, event in enumerate(events):
            stream = stream_of(k, tasks)
            async with conn.transaction():
                version = await conn.fetchval(
                    "SELECT MAX(version) FROM events WHERE stream_id = $1", stream
                )
                assert version is None, "the stream is new"
                await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
                head = await conn.fetchrow(
                    "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
                )
                position, previous = (head[0], head[1]) if head else (0, GENESIS_HASH)
                row = encode(event, position + 1, stream, format_time(datetime.now(UTC)))
                await conn.execute(
                    f"INSERT INTO events ({EVENT_COLUMNS})"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    *row,
                    chain_hash(previous, row),
                )
        elapsed = time.perf_counter() - started
        await conn.close()
    return total / elapsed


async def bench_store(total: int, tasks: int) -> float:
    events = [sample_event(k) for k in range(total - total % tasks)]

    async def worker(t: int, store: PostgreSQLEventStore) -> None:
        for k in range(t, len(events), tasks):
            await store.append(stream_of(k, tasks), [events[k]], NO_STREAM)

    async with Database() as db, await PostgreSQLEventStore.open(db.url) as store:
        started = time.perf_counter()
        await asyncio.gather(*(worker(t, store) for t in range(tasks)))
        elapsed = time.perf_counter() - started
        report = await store.verify()
        if not report.ok or report.events_checked != len(events):
            raise RuntimeError(f"the benchmark's log does not verify: {report}")
    return len(events) / elapsed


async def lock_hold(batch: int, samples: int) -> float:
    """Median seconds from the locked call to the end of the commit, for ``batch`` events."""
    held = []
    async with Database() as db:
        conn = await asyncpg.connect(db.url)
        for n in range(samples):
            events = [sample_event(n * batch + k) for k in range(batch)]
            columns = [
                [e.event_id for e in events],
                [f"hold-{n}-{k}" for k in range(batch)],
                [1] * batch,
                [e.type for e in events],
                [to_json(e.data, "data") for e in events],
                [to_json(e.metadata, "metadata") for e in events],
            ]
            transaction = conn.transaction()
            await transaction.start()
            started = time.perf_counter()
            await conn.fetchrow(
                "SELECT * FROM eventstore_append($1::text[], $2::text[], $3::integer[],"
                " $4::text[], $5::text[], $6::text[], $7, '{}', '{}')",
                *columns,
                format_time(datetime.now(UTC)),
            )
            await transaction.commit()
            held.append(time.perf_counter() - started)
        await conn.close()
    return statistics.median(held)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per measurement")
    parser.add_argument("--naive-events", type=int, default=2_000)
    parser.add_argument("--tasks", type=int, default=64, help="concurrent appending tasks")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    args = parser.parse_args()

    minimal, naive, store = [], [], []
    for _ in range(args.rounds):
        minimal.append(asyncio.run(bench_minimal(args.events, args.tasks)))
        naive.append(asyncio.run(bench_naive(args.naive_events, args.tasks)))
        store.append(asyncio.run(bench_store(args.events, args.tasks)))
    holds = {batch: asyncio.run(lock_hold(batch, 300)) for batch in (1, 10, 64)}
    best_minimal, best_naive, best_store = max(minimal), max(naive), max(store)
    vs_minimal, vs_naive = best_store / best_minimal, best_store / best_naive
    print(f"PostgreSQL append benchmark, synchronous_commit on, best of {args.rounds} rounds")
    print(f"  (a) minimal asyncpg, 10 events/txn, unnest  {best_minimal:>9,.0f} events/s")
    print(f"  (b) naive asyncpg append, 1/txn             {best_naive:>9,.0f} events/s")
    print(f"  (c) store, {args.tasks} tasks, group commit          {best_store:>9,.0f} events/s")
    print(f"  ratio c/a = {vs_minimal:.2f} (target >= {TARGET_VS_MINIMAL})")
    print(f"  ratio c/b = {vs_naive:.1f} (target >= {TARGET_VS_NAIVE})")
    print("  the log's lock, held from the locked call to the end of the commit (median):")
    for batch, hold in holds.items():
        print(
            f"    {batch:>3} event(s)/txn: {hold * 1e3:6.3f} ms -> ceiling {1 / hold:>7,.0f} txn/s,"
            f" {batch / hold:>9,.0f} events/s per database"
        )
    met = vs_minimal >= TARGET_VS_MINIMAL and vs_naive >= TARGET_VS_NAIVE
    print("  targets met" if met else "  TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
