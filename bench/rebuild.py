"""Rebuild throughput: replay a realistic log into empty views, against a raw scan of the log.

Generates logs of realistic events (checkouts of 1–3 stores by XENDIT, QRIS and BALANCE,
payments, completions, refunds with the buyer's credit, expiries, top-ups: the domain's own
events, decided by the domain's own functions), then times ``rebuild`` (the very code of
``python -m service rebuild``) until it returns, its views committed, and until the checkpoint
that follows it in the background has copied its pages into the database file; then a second
rebuild, over the views the first one filled (as on a running service's database); and, in the
same run, a raw ``sqlite3`` scan of the events table, right before and right after each round.
Each size is rebuilt ``--rounds`` times (3), each time a fresh copy of the log in a fresh child
process, whose own VmHWM is the peak memory, so rounds and sizes do not share a high-water mark;
the best round counts, as in the other benchmarks, and every round is printed. This VM's speed
drifts by more than twice from minute to minute, so each round's rate is also given as a ratio
to the mean of the two scans beside it, taken at that minute's speed.

Targets: rebuild >= 100,000 events/s; peak memory that does not grow with the log's size.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventstore import NO_STREAM, EventStore, StreamAppend
from eventstore.sqlite import SQLiteEventStore
from service.domain.balance import Balance, decide_debit, evolve_balance
from service.domain.events import (
    BalanceCredited,
    BalanceToppedUp,
    Event,
    InvoiceCreated,
    InvoicePaid,
    OnmarketInvoiceReserved,
    TransactionLine,
)
from service.domain.invoice import (
    Invoice,
    decide_cancel,
    decide_completion,
    decide_expiry,
    decide_refund_completion,
    evolve,
)
from service.records import encode
from service.views.sqlite import all_projectors

TARGET_EVENTS_PER_SECOND = 100_000
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
# What decides a generated log's bytes (the views are not in it).
LOG_KEY_SOURCES = (
    "bench/rebuild.py",
    "eventstore/sqlite/schema.py",
    "eventstore/records.py",
    "service/domain",
)
START = datetime(2026, 1, 1, tzinfo=UTC)
APPEND_BATCH = 2_000  # events per atomic append while generating


def lifecycle(
    n: int, rng: random.Random, balances: dict[str, Balance | None]
) -> list[tuple[str, Event]]:
    """The events of one invoice's life, with the balance and reservation events around it."""
    # A time with microseconds, as the service's clock gives them (a whole second is 1 in 10^6).
    now = START + timedelta(seconds=n, microseconds=rng.randrange(1, 1_000_000))
    buyer = f"buyer{rng.randrange(5000)}"
    service = rng.choice(["ONMARKET", "ONDELIVERY", "ONTICKET"])
    source = rng.choices(["XENDIT", "QRIS", "BALANCE"], weights=[6, 2, 2])[0]
    lines = tuple(
        TransactionLine(
            f"INV/{n}/{i}",
            f"seller{rng.randrange(2000)}",
            rng.randrange(1, 500) * 1000,
            rng.choice([5000, 9000, 12000]),
            rng.choice([0, 100, 500]),
            1000,
            f"WB{n}{i}" if service == "ONDELIVERY" else None,
        )
        for i in range(rng.choice([1, 1, 2, 3]))
    )
    total = sum(line.total for line in lines)
    invoice = f"{service[:1]}X{n:013d}"
    created = InvoiceCreated(
        invoice,
        buyer,
        service,
        source,
        total,
        lines,
        f"{n:024x}",
        f"http://127.0.0.1:8080/sandbox/checkout/{n:024x}",
        None,
        now,
        now + timedelta(hours=2),
    )
    out: list[tuple[str, Event]] = [(f"invoice-{invoice}", created)]
    out += [
        (
            f"onmarket-{line.invoice_onmarket}",
            OnmarketInvoiceReserved(line.invoice_onmarket, invoice),
        )
        for line in lines
    ]
    state: Invoice = evolve(None, created)
    if source == "BALANCE":
        balance = balances.get(buyer)
        if balance is None or balance.amount < total:
            top_up = BalanceToppedUp(buyer, total * 3, "admin", now)
            out.append((f"balance-{buyer}", top_up))
            balance = evolve_balance(balance, top_up)
        debit = decide_debit(balance, buyer, total, invoice, now)
        balances[buyer] = evolve_balance(balance, debit)
        out.append((f"balance-{buyer}", debit))
        paid: Event = InvoicePaid(
            invoice, total, "BALANCE", f"balance-{invoice}", "BALANCE", "BALANCE", now
        )
    elif rng.random() < 0.15:
        for event in decide_expiry(state, now + timedelta(hours=3)):
            out.append((f"invoice-{invoice}", event))
        return out
    else:
        paid = InvoicePaid(
            invoice, total, source, f"pay-{n}", "BANK_TRANSFER", "BCA", now + timedelta(minutes=5)
        )
    out.append((f"invoice-{invoice}", paid))
    state = evolve(state, paid)
    later = now + timedelta(days=1)
    for line in lines:
        if rng.random() < 0.2:
            for event in decide_cancel(
                state,
                invoice_onmarket=line.invoice_onmarket,
                buyer_username=buyer,
                by="onmarket",
                now=later,
            ):
                state = evolve(state, event)
                out.append((f"invoice-{invoice}", event))
            for event in decide_refund_completion(state, line.invoice_onmarket, later):
                state = evolve(state, event)
                out.append((f"invoice-{invoice}", event))
                credit = BalanceCredited(
                    buyer, event.amount, invoice, "refund", f"escrow:{invoice}", later
                )
                balances[buyer] = evolve_balance(balances.get(buyer), credit)
                out.append((f"balance-{buyer}", credit))
        else:
            for event in decide_completion(
                state, invoice_onmarket=line.invoice_onmarket, by="onmarket", now=later
            ):
                state = evolve(state, event)
                out.append((f"invoice-{invoice}", event))
    return out


async def generate(path: Path, total: int, seed: int = 7) -> int:
    """Write at least ``total`` events of whole invoice lives; return how many were written."""
    rng = random.Random(seed)
    balances: dict[str, Balance | None] = {}
    versions: dict[str, int] = {}
    written, n = 0, 0
    async with await SQLiteEventStore.open(path, synchronous="OFF") as store:
        pending: list[tuple[str, Event]] = []
        while written + len(pending) < total:
            pending += lifecycle(n, rng, balances)
            n += 1
            if len(pending) >= APPEND_BATCH or written + len(pending) >= total:
                written += await _append(store, pending, versions)
                pending = []
        if pending:
            written += await _append(store, pending, versions)
    return written


async def _append(
    store: EventStore, pending: list[tuple[str, Event]], versions: dict[str, int]
) -> int:
    by_stream: dict[str, list[Event]] = {}
    for stream, event in pending:
        by_stream.setdefault(stream, []).append(event)
    appends = []
    for stream, events in by_stream.items():
        expected = versions.get(stream, NO_STREAM)
        appends.append(
            StreamAppend(stream, expected, [encode(e, {"actor": "bench"}) for e in events])
        )
        versions[stream] = expected + len(events)
    await store.append_streams(appends)
    return len(pending)


async def time_rebuild(path: Path) -> tuple[float, float, float]:
    """Events/s of a rebuild until it returns (its views committed), and until its pages have
    also been checkpointed from the WAL into the database file (which follows it in the
    background); then of a second rebuild, over the views the first one filled, as an
    operator's ``rebuild`` of a running service's database finds them."""
    async with await SQLiteEventStore.open(path, projectors=all_projectors()) as store:
        started = time.perf_counter()
        count = await store.rebuild_projections()
        committed = time.perf_counter() - started
        await store.checkpointed()
        checkpointed = time.perf_counter() - started
        started = time.perf_counter()
        await store.rebuild_projections()
        again = time.perf_counter() - started
    return count / committed, count / checkpointed, count / again


def time_raw_scan(path: Path) -> float:
    conn = sqlite3.connect(path)
    started = time.perf_counter()
    count = 0
    for _ in conn.execute("SELECT position, stream_id, type, data, metadata FROM events"):
        count += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def source_digest(names: tuple[str, ...]) -> str:
    """A short digest of the repository's files and folders ``names`` (their Python sources):
    a cached file built by that code is rebuilt once any of it changes."""
    digest = hashlib.sha256()
    for name in names:
        source = ROOT / name
        for path in sorted(source.rglob("*.py")) if source.is_dir() else [source]:
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cached_log(size: int, cache: Path = CACHE) -> tuple[Path, int, float | None]:
    """A generated log of ``size`` events (no views), kept under ``bench/.cache/`` and shared with
    the HTTP benchmark's pre-filled database: (its path, its events, the seconds generating it
    took, or None when it was there already). Never change the file: copy it."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"log-{size}-{source_digest(LOG_KEY_SOURCES)}.db"
    if final.exists():
        with sqlite3.connect(final) as conn:
            (events,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        return final, int(events), None
    for stale in cache.glob(f"log-{size}-*.db"):  # another digest: the code has changed
        stale.unlink()
    building = cache / f"log-{size}.building.db"
    building.unlink(missing_ok=True)
    started = time.perf_counter()
    events = asyncio.run(generate(building, size))
    seconds = time.perf_counter() - started
    building.rename(final)
    return final, events, seconds


@dataclass(frozen=True, slots=True)
class Measured:
    """One log size's rounds: events/s of each rebuild, rows/s of the raw scans before and
    after it, and the highest peak RSS (KiB) of the rebuilding process and of its worker over
    the rounds."""

    size: int
    rates: list[float]
    with_checkpoint: list[float]
    over_views: list[float]
    scans: list[tuple[float, float]]  # each round's (before, after)
    peak: int
    worker_peak: int

    @property
    def rate(self) -> float:
        return max(self.rates)

    @property
    def scan(self) -> float:
        return max(max(pair) for pair in self.scans)

    @property
    def ratios(self) -> list[float]:
        """Each round's rebuild rate over the mean rate of the scans beside it."""
        return [rate / (sum(pair) / 2) for rate, pair in zip(self.rates, self.scans, strict=True)]


def measure(size: int, folder: Path, rounds: int) -> Measured:
    """Rebuild a fresh copy of a generated log of ``size`` events ``rounds`` times, each in a
    fresh process (its peak memory the rebuild's alone), and scan it raw after each."""
    source, _, seconds = cached_log(size)
    if seconds is not None:
        print(f"  generated a log of {size:,} events in {seconds:.0f} s (kept in {source.parent})")
    path = folder / f"log-{size}.db"
    rates, with_checkpoint, over_views, scans, peaks, worker_peaks = [], [], [], [], [], []
    for _ in range(rounds):
        shutil.copyfile(source, path)  # the generated log has no views: each round starts empty
        before = time_raw_scan(path)
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        rate, checkpointed, again, peak, worker_peak = result.stdout.split()
        rates.append(float(rate))
        with_checkpoint.append(float(checkpointed))
        over_views.append(float(again))
        scans.append((before, time_raw_scan(path)))
        peaks.append(int(peak))
        worker_peaks.append(int(worker_peak))
    return Measured(size, rates, with_checkpoint, over_views, scans, max(peaks), max(worker_peaks))


def child(path: str) -> None:
    rate, with_checkpoint, again = asyncio.run(time_rebuild(Path(path)))
    # The worker's is an upper bound: Linux carries ru_maxrss across the exec that starts it, so
    # it is at least this process's size when the worker was started.
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"{rate} {with_checkpoint} {again} {peak_rss_kib()} {worker}")


def peak_rss_kib() -> int:
    """This process's peak RSS. Linux keeps ru_maxrss across exec, so a child forked from a
    parent that has just generated a large log would report the parent's peak; /proc's VmHWM
    belongs to the new process image alone."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="log sizes, comma-separated")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rebuilds of each size; the best one counts"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        results = [measure(size, Path(tmp), args.rounds) for size in sizes]
    print(f"rebuild benchmark (views: invoices, ledger, users; best of {args.rounds} rounds)")
    for m in results:
        print(
            f"  {m.size:>9,} events: rebuild {m.rate:>9,.0f} events/s"
            f"  raw scan {m.scan:>10,.0f} rows/s  ({m.rate / m.scan:.2f} of the fastest scan)"
            f"  peak RSS {m.peak / 1024:,.0f} MiB (its worker <= {m.worker_peak / 1024:,.0f} MiB)"
        )
        print(f"             rounds: {', '.join(f'{rate:,.0f}' for rate in m.rates)} events/s;")
        print(
            "             each over the mean of the scans right before and after it:"
            f" {', '.join(f'{ratio:.3f}' for ratio in m.ratios)}"
            f" (scans {', '.join(f'{a / 1e6:.2f}/{b / 1e6:.2f}M' for a, b in m.scans)} rows/s);"
        )
        print(
            "             until its pages were also checkpointed into the file (in the"
            f" background): {', '.join(f'{rate:,.0f}' for rate in m.with_checkpoint)} events/s;"
        )
        print(
            "             rebuilt again, over the views the first rebuild filled:"
            f" {', '.join(f'{rate:,.0f}' for rate in m.over_views)} events/s"
        )
    smallest, largest = results[0], results[-1]
    flat = largest.peak <= smallest.peak * 1.5 and largest.worker_peak <= smallest.worker_peak * 1.5
    fast = all(m.rate >= TARGET_EVENTS_PER_SECOND for m in results)
    print(
        f"  target >= {TARGET_EVENTS_PER_SECOND:,} events/s: {'met' if fast else 'MISSED'};"
        f" memory flat (largest <= 1.5 x smallest): {'yes' if flat else 'NO'}"
    )
    return 0 if fast and flat else 1


if __name__ == "__main__":
    sys.exit(main())
