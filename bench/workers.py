"""Scaling out on one machine: checkout throughput of ``serve --workers 1`` and ``--workers 2``
on SQLite and on PostgreSQL, in one run.

Four services run as users run them (``python -m service serve --workers N``, development mode,
sandbox gateway, JSON logs at INFO to a file): ``--workers 1`` and ``--workers 2`` on fresh SQLite
files (``synchronous=FULL``), and the same on fresh PostgreSQL databases (created for the run on
the server at ``INVOICE_TEST_POSTGRES``, the local one by default, and dropped after), each with
the same registered buyers. The load is ``bench/loadgen.py``'s ``checkout`` scenario (XENDIT
checkouts of two stores, new buyers and numbers each) at ``--connections`` keep-alive
connections, from a separate process. The cells alternate, ``--rounds`` times (SQLite 1, 2,
PostgreSQL 1, 2, SQLite 1, …), so that the machine's drifting speed (other programs share it)
affects all alike; each figure is the median of its rounds (the best is recorded too). Every
answer that is not 2xx is an error, counted and shown.

Targets, on the medians (issue 18):
- ``--workers 2`` >= 1.5 x ``--workers 1``, on SQLite and on PostgreSQL;
- PostgreSQL (1 process) >= 0.6 x SQLite (1 process).

The load generator and the PostgreSQL server share the machine's cores with the services: the
cores and the load average are printed and recorded, and the ratios are what they are on them.
The exit status is 1 if a target is missed or any request failed, 2 if the benchmark could not
run.

Run it as ``python -m bench.workers`` (``make bench`` does); ``--quick`` for a 2 s check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import fixtures
from bench.http import CHECKOUT_BUYERS, BenchmarkFailed, run_loadgen, say
from bench.pg_append import ADMIN_URL
from bench.servers import ROOT, Server, ServerFailed, start_service

BACKENDS = ("sqlite", "postgresql")
# (what, numerator cell, denominator cell, target): cells are "<backend>-<workers>".
TARGETS = (
    ("--workers 2 / --workers 1 on SQLite", "sqlite-2", "sqlite-1", 1.5),
    ("--workers 2 / --workers 1 on PostgreSQL", "postgresql-2", "postgresql-1", 1.5),
    ("PostgreSQL / SQLite, 1 process", "postgresql-1", "sqlite-1", 0.6),
)
RESULTS = ROOT / "bench" / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 s cells, 1 round")
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before")
    parser.add_argument("--rounds", type=int, default=3, help="cells per service, alternating")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, help="where to write the results")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 0.5, 1
    args.json = args.json or RESULTS / ("workers-quick.json" if args.quick else "workers.json")
    return args


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (the supervisor and its
    workers), from /proc."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_cpu_seconds() -> float:
    """User + system CPU seconds of every live PostgreSQL server process on this machine (all
    databases: other programs' too), from /proc; 0 where they cannot be read."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] != "postgres":
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(server: Server, spec: dict[str, Any], path: Path) -> dict[str, Any]:
    server.check_alive()
    cpu_before = tree_cpu_seconds(server.pid)
    postgres_before = postgres_cpu_seconds()
    report = run_loadgen({**spec, "base_url": server.base_url, "server_pid": server.pid}, path)
    # The server's CPU over the whole cell (warm-up included: the load generator's own window
    # counts only the supervisor, whose children do the work).
    server_cpu = tree_cpu_seconds(server.pid) - cpu_before
    # The database server's share (on SQLite: other programs' PostgreSQL work, if any).
    postgres_cpu = postgres_cpu_seconds() - postgres_before
    server.check_alive()
    primary = report["operations"].get(report["primary"]) or {"count": 0}
    return {
        "throughput": primary["count"] / report["window_seconds"],
        "p50_ms": primary.get("p50_ms"),
        "p99_ms": primary.get("p99_ms"),
        "errors": report["errors"]["total"],
        "loadgen_cpu_share": report["loadgen_cpu_share"],
        "server_cpu_share": server_cpu / (spec["warmup"] + spec["duration"]),
        "postgres_cpu_share": postgres_cpu / (spec["warmup"] + spec["duration"]),
        # Everything the machine ran, in cores: with the load generator, both cores busy?
        "machine_cpu_share": report.get("machine_cpu_share"),
    }


async def create_database(name: str) -> str:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{ADMIN_URL.rpartition('/')[0]}/{name}"


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def run(
    args: argparse.Namespace, work: Path, servers: list[Server], databases: list[str]
) -> dict[str, Any]:
    token_secret, tag = secrets.token_urlsafe(32), secrets.token_hex(3)
    pool = [f"w{tag}b{i}" for i in range(CHECKOUT_BUYERS)]
    by_cell: dict[str, Server] = {}
    for backend in BACKENDS:
        for workers in (1, 2):
            key = f"{backend}-{workers}"
            if backend == "sqlite":
                database = str(work / f"{key}.db")
            else:
                databases.append(f"bench_workers_{tag}_{workers}")
                database = asyncio.run(create_database(databases[-1]))
            asyncio.run(fixtures.register_buyers(database, pool))
            server = start_service(
                f"{backend} serve --workers {workers}",
                database,
                work / f"{key}.log",
                token_secret=token_secret,
                synchronous="FULL",
                workers=workers,
            )
            servers.append(server)
            by_cell[key] = server
    for server in servers:
        server.wait_ready()
    spec = {
        "scenario": "checkout",
        "concurrency": args.connections,
        "warmup": args.warmup,
        "duration": args.duration,
        "token_secret": token_secret,
        "checkout_buyers": pool,
        "reads": [],
        "buyers": [],
    }
    cells: dict[str, list[dict[str, Any]]] = {cell: [] for cell in by_cell}
    for round_ in range(args.rounds):
        for name, server in by_cell.items():
            cell = measure(server, {**spec, "tag": f"{tag}r{round_}{name}"}, work / "cell.json")
            cell["load_average"] = os.getloadavg()[0]
            cells[name].append(cell)
            say(
                f"  round {round_ + 1}/{args.rounds} {name:>12}:"
                f" {cell['throughput']:8,.1f} checkouts/s, p50 {cell['p50_ms'] or 0:.1f} ms,"
                f" p99 {cell['p99_ms'] or 0:.1f} ms, {cell['errors']} errors,"
                f" server {cell['server_cpu_share']:.2f} cores,"
                f" postgres {cell['postgres_cpu_share']:.2f} cores,"
                f" load generator {cell['loadgen_cpu_share']:.2f} cores, machine"
                f" {cell['machine_cpu_share'] or 0:.2f} cores busy,"
                f" load average {cell['load_average']:.2f}"
            )
    best = {name: max(c["throughput"] for c in cells[name]) for name in cells}
    median = {name: statistics.median(c["throughput"] for c in cells[name]) for name in cells}
    errors = sum(c["errors"] for name in cells for c in cells[name])
    ratios: list[dict[str, Any]] = []
    for what, numerator, denominator, target in TARGETS:
        ratio = median[numerator] / median[denominator] if median[denominator] else None
        best_ratio = best[numerator] / best[denominator] if best[denominator] else None
        ratios.append(
            {
                "what": what,
                "ratio": ratio,
                "best_ratio": best_ratio,
                "target": target,
                "met": ratio is not None and ratio >= target,
            }
        )
    return {
        "cells": cells,
        "best_throughput": best,
        "median_throughput": median,
        "ratios": ratios,
        "errors": errors,
        "met": all(r["met"] for r in ratios) and errors == 0,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    say(
        f"workers benchmark: checkout XENDIT at {args.connections} connections, {args.rounds}"
        f" round(s) of {args.warmup:g} s + {args.duration:g} s per service, on SQLite and"
        f" PostgreSQL; {os.cpu_count()} cores shared by the services, the PostgreSQL server and"
        f" the load generator; load average {os.getloadavg()[0]:.2f} before"
    )
    servers: list[Server] = []
    databases: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        try:
            outcome = run(args, Path(folder), servers, databases)
        except (BenchmarkFailed, ServerFailed, OSError, asyncpg.PostgresError) as error:
            print(f"the benchmark could not run: {error}", file=sys.stderr)
            return 2
        finally:
            for server in servers:
                server.stop()
            for name in databases:
                asyncio.run(drop_database(name))
    median = outcome["median_throughput"]
    say(
        "  medians: "
        + ", ".join(f"{name} {throughput:,.1f}/s" for name, throughput in median.items())
    )
    for ratio in outcome["ratios"]:
        value = "-" if ratio["ratio"] is None else format(ratio["ratio"], ".2f")
        say(
            f"  {ratio['what']}: {value} (best of rounds {ratio['best_ratio'] or 0:.2f};"
            f" target >= {ratio['target']:g}): {'PASS' if ratio['met'] else 'MISS'}"
        )
    say(f"  {outcome['errors']} failed requests")
    say(
        f"  overall: {'PASS' if outcome['met'] else 'MISS'}"
        " (every target met and no request failed)"
    )
    results = {
        "benchmark": "workers",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "the load generator and the PostgreSQL server run on the same cores as the"
            " services",
        },
        "settings": {
            "connections": args.connections,
            "duration_seconds": args.duration,
            "warmup_seconds": args.warmup,
            "rounds": args.rounds,
            "synchronous": "FULL",
        },
        **outcome,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if outcome["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
