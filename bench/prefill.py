"""The HTTP benchmark's large database: a log of N realistic events with its views, cached.

Built once per size and kept under ``bench/.cache/`` (ignored by git), named by the size and a
digest of the code that shapes the file (the generator, the schema, the events, the views), so
a changed schema builds a new one and a second run reuses it. Building it:

1. ``bench/rebuild.py``'s generator writes N events of whole invoice lives, decided by the
   domain's own functions;
2. ``python -m service rebuild`` replays them into the views;
3. the file is brought to where a service that has been running on it would have left it, so
   that each benchmark run measures the service and not its first start: the development
   accounts exist, and the refund worker's checkpoint is at the head. The worker would get
   there by reading the whole log once (minutes at 1M events) and finding nothing to do: every
   refund the generator writes is completed at once, which is checked (as many
   RefundCompleted as RefundRequested) before the checkpoint is stored through the store's own
   ``save_checkpoint``. Should that ever not hold, the service is started on the file instead
   and left to settle, its worker doing the real work.

Each run measures a copy, so the cached file never changes.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.rebuild import cached_log, source_digest
from bench.servers import ROOT, child_environment, start_service
from eventstore.sqlite import SQLiteEventStore
from service.app import ensure_dev_accounts, make_gateway, make_service
from service.config import load_config
from service.views.sqlite import all_projectors
from service.workers.refunds import NAME as REFUND_WORKER

DEFAULT_CACHE = ROOT / "bench" / ".cache"
# What decides the file's content: a change to any of them builds a new file.
KEY_SOURCES = (
    "bench/rebuild.py",
    "eventstore/sqlite/schema.py",
    "eventstore/records.py",
    "service/domain/events.py",
    "service/views",
)
CATCH_UP_TIMEOUT_SECONDS = 900.0


@dataclass(frozen=True)
class Prefill:
    path: Path
    events: int
    reused: bool
    generate_seconds: float
    rebuild_seconds: float
    catch_up_seconds: float
    size_bytes: int
    built_at: str


def ensure_prefill(
    size: int,
    cache: Path,
    *,
    token_secret: str,
    synchronous: str,
    say: Callable[[str], None] = print,
) -> Prefill:
    """The cached database of ``size`` events, built first if there is none."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"http-prefill-{size}"
    final = cache / f"{stem}-{source_digest(KEY_SOURCES)}.db"
    meta = final.with_suffix(".json")
    if final.exists() and meta.exists():
        return Prefill(**{**json.loads(meta.read_text()), "path": final, "reused": True})
    for stale in cache.glob(f"{stem}-*"):  # another digest: the code has changed since
        stale.unlink()
    building = cache / f"{stem}.building.db"
    say(f"building the {size:,}-event database (cached for later runs: {final})")

    started = time.perf_counter()
    source, events, generated = cached_log(size, cache)
    shutil.copyfile(source, building)
    generate_seconds = time.perf_counter() - started
    if generated is None:
        say(f"  copied the generated log of {events:,} events ({source.name}, cached)")
    else:
        say(f"  generated {events:,} events in {generated:.1f}s")

    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "service", "rebuild", "--db", str(building)],
        cwd=ROOT,
        env=child_environment({}),
        check=True,
        capture_output=True,
    )
    rebuild_seconds = time.perf_counter() - started
    say(f"  rebuilt the views (python -m service rebuild) in {rebuild_seconds:.1f}s")

    started = time.perf_counter()
    if asyncio.run(_as_left_by_a_running_service(building)):
        what = "development accounts, refund worker's checkpoint at the head (no refund pending)"
    else:
        what = "first start of the service: its refund worker read the whole log"
        log = cache / f"{stem}.catch-up.log"
        server = start_service(
            "catch-up service", building, log, token_secret=token_secret, synchronous=synchronous
        )
        try:
            server.wait_ready()
            server.wait_settled(CATCH_UP_TIMEOUT_SECONDS)
        finally:
            server.stop()
        log.unlink()
    catch_up_seconds = time.perf_counter() - started
    say(f"  {what}: {catch_up_seconds:.1f}s")

    conn = sqlite3.connect(building)  # fold the WAL in: one self-contained file
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    building.rename(final)
    prefill = Prefill(
        final,
        events,
        False,
        generate_seconds,
        rebuild_seconds,
        catch_up_seconds,
        final.stat().st_size,
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    meta.write_text(json.dumps({**asdict(prefill), "path": str(final), "reused": False}) + "\n")
    return prefill


async def _as_left_by_a_running_service(path: Path) -> bool:
    """The development accounts and the refund worker's checkpoint at the head, if no refund in
    the log is pending; False (nothing done) otherwise."""
    config = load_config(None, environ={}, database=str(path))
    gateway = make_gateway(config)
    try:
        async with await SQLiteEventStore.open(path, projectors=all_projectors()) as store:
            counts = dict(
                await store.query(
                    "SELECT type, COUNT(*) FROM events"
                    " WHERE type IN ('RefundRequested', 'RefundCompleted') GROUP BY type"
                )
            )
            if counts.get("RefundRequested", 0) != counts.get("RefundCompleted", 0):
                return False
            await ensure_dev_accounts(make_service(store, gateway, config))
            await store.save_checkpoint(REFUND_WORKER, await store.head_position())
    finally:
        await gateway.close()
    return True


def copy_database(source: Path, target: Path) -> float:
    """Copy the cached file for one run to write into; the seconds it took."""
    started = time.perf_counter()
    shutil.copyfile(source, target)
    return time.perf_counter() - started


def sample_invoices(database: Path, count: int, seed: int = 11) -> list[list[str]]:
    """``count`` invoices spread over the whole log, as ``[invoice, buyer]`` pairs."""
    rng = random.Random(seed)
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        (last,) = conn.execute("SELECT MAX(seq) FROM invoice_view").fetchone()
        pairs: list[list[str]] = []
        for seq in rng.sample(range(1, last + 1), min(count, last)):
            row = conn.execute(
                "SELECT invoice, username FROM invoice_view WHERE seq = ?", (seq,)
            ).fetchone()
            if row is not None:
                pairs.append([row[0], row[1]])
        return pairs
    finally:
        conn.close()
