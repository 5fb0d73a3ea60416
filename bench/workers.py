"""``serve --workers 2`` against ``serve --workers 1``: checkout throughput on SQLite, one run.

Both services run as users run them (``python -m service serve --workers N``, development mode,
sandbox gateway, ``synchronous=FULL``, JSON logs at INFO to a file), each on a fresh database
with the same registered buyers. The load is ``bench/loadgen.py``'s ``checkout`` scenario (XENDIT
checkouts of two stores, new buyers and numbers each) at ``--connections`` keep-alive
connections, from a separate process. The cells alternate, ``--rounds`` times (1, 2, 1, 2, …),
so that the machine's drifting speed affects both alike; each figure is the best of its rounds,
as in the other benchmarks (the medians are recorded too). Every answer that is not 2xx is an
error, counted and shown.

Target: ``--workers 2`` >= 1.5 x ``--workers 1`` checkout throughput. The load generator shares
the machine with the server: the cores are printed and recorded, and the ratio is what it is on
them. The exit status is 1 if the target is missed or any request failed, 2 if the benchmark
could not run.

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

from bench import fixtures
from bench.http import CHECKOUT_BUYERS, BenchmarkFailed, run_loadgen, say
from bench.servers import ROOT, Server, ServerFailed, start_service

TARGET = 1.5
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


def measure(server: Server, spec: dict[str, Any], path: Path) -> dict[str, Any]:
    server.check_alive()
    cpu_before = tree_cpu_seconds(server.pid)
    report = run_loadgen({**spec, "base_url": server.base_url, "server_pid": server.pid}, path)
    # The server's CPU over the whole cell (warm-up included: the load generator's own window
    # counts only the supervisor, whose children do the work).
    server_cpu = tree_cpu_seconds(server.pid) - cpu_before
    server.check_alive()
    primary = report["operations"].get(report["primary"]) or {"count": 0}
    return {
        "throughput": primary["count"] / report["window_seconds"],
        "p50_ms": primary.get("p50_ms"),
        "p99_ms": primary.get("p99_ms"),
        "errors": report["errors"]["total"],
        "loadgen_cpu_share": report["loadgen_cpu_share"],
        "server_cpu_share": server_cpu / (spec["warmup"] + spec["duration"]),
        # Everything the machine ran, in cores: with the load generator, both cores busy?
        "machine_cpu_share": report.get("machine_cpu_share"),
    }


def run(args: argparse.Namespace, work: Path, servers: list[Server]) -> dict[str, Any]:
    token_secret, tag = secrets.token_urlsafe(32), secrets.token_hex(3)
    pool = [f"w{tag}b{i}" for i in range(CHECKOUT_BUYERS)]
    by_workers: dict[int, Server] = {}
    for workers in (1, 2):
        database = work / f"workers-{workers}.db"
        asyncio.run(fixtures.register_buyers(database, pool))
        server = start_service(
            f"serve --workers {workers}",
            database,
            work / f"workers-{workers}.log",
            token_secret=token_secret,
            synchronous="FULL",
            workers=workers,
        )
        servers.append(server)
        by_workers[workers] = server
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
    cells: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for round_ in range(args.rounds):
        for workers, server in by_workers.items():
            cell = measure(server, {**spec, "tag": f"{tag}r{round_}w{workers}"}, work / "cell.json")
            cells[workers].append(cell)
            say(
                f"  round {round_ + 1}/{args.rounds} --workers {workers}:"
                f" {cell['throughput']:8,.1f} checkouts/s, p50 {cell['p50_ms'] or 0:.1f} ms,"
                f" p99 {cell['p99_ms'] or 0:.1f} ms, {cell['errors']} errors,"
                f" server {cell['server_cpu_share']:.2f} cores,"
                f" load generator {cell['loadgen_cpu_share']:.2f} cores, machine"
                f" {cell['machine_cpu_share'] or 0:.2f} cores busy"
            )
    best = {w: max(c["throughput"] for c in cells[w]) for w in cells}
    median = {w: statistics.median(c["throughput"] for c in cells[w]) for w in cells}
    errors = sum(c["errors"] for w in cells for c in cells[w])
    ratio = best[2] / best[1] if best[1] else None
    return {
        "cells": cells,
        "best_throughput": best,
        "median_throughput": median,
        "median_ratio": median[2] / median[1] if median[1] else None,
        "ratio": ratio,
        "errors": errors,
        "met": ratio is not None and ratio >= TARGET and errors == 0,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    say(
        f"workers benchmark: checkout XENDIT at {args.connections} connections, {args.rounds}"
        f" round(s) of {args.warmup:g} s + {args.duration:g} s per service; {os.cpu_count()}"
        " cores shared by the servers and the load generator"
    )
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        try:
            outcome = run(args, Path(folder), servers)
        except (BenchmarkFailed, ServerFailed) as error:
            print(f"the benchmark could not run: {error}", file=sys.stderr)
            return 2
        finally:
            for server in servers:
                server.stop()
    ratio = outcome["ratio"]
    say(
        f"  best: --workers 1 {outcome['best_throughput'][1]:,.1f}/s, --workers 2"
        f" {outcome['best_throughput'][2]:,.1f}/s: ratio"
        f" {'-' if ratio is None else format(ratio, '.2f')} (target >= {TARGET:g}),"
        f" {outcome['errors']} errors: {'PASS' if outcome['met'] else 'MISS'}"
    )
    results = {
        "benchmark": "workers",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "the load generator runs on the same cores as the servers",
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
