"""The cost of the metrics: checkout and detail throughput with ``metrics: true`` against
``metrics: false``, in the same run, on two services started alike.

Two ``python -m service serve`` processes (``bench.servers.start_service``), each on a fresh
SQLite file, one with the setting ``metrics`` false (no request histogram observed: the
domain counters, which cost a dictionary lookup per committed event, stay on in both). The load
comes from ``bench/loadgen.py`` in its own process, as in ``bench.http``. For each number of
connections and scenario the cells run on, off, off, on, so that the machine's drifting speed
weighs on both alike; each side's throughput is the mean of its two cells.

Target: with metrics, each scenario's throughput >= 0.95 x without, at every number of
connections. The exit status is 1 if it is missed, 2 if the benchmark could not run.
``--quick`` (1 s warm-up, 3 s cells) checks that it works in about a minute.

Run it as ``python -m bench.metrics`` (``make bench`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.http import CHECKOUT_BUYERS, SETTLE_SECONDS, BenchmarkFailed, run_loadgen
from bench.servers import Server, ServerFailed, start_service

TARGET = 0.95
SCENARIOS = ("checkout", "detail")
READS = 200


def measure(
    server: Server,
    scenario: str,
    connections: int,
    args: argparse.Namespace,
    extra: dict[str, Any],
    path: Path,
) -> float:
    """One cell's throughput (requests per second); errors fail the benchmark."""
    server.check_alive()
    spec = {
        "base_url": server.base_url,
        "scenario": scenario,
        "concurrency": connections,
        "warmup": args.warmup,
        "duration": args.duration,
        "server_pid": server.pid,
        **extra,
    }
    report = run_loadgen(spec, path)
    if report["errors"]["total"]:
        raise BenchmarkFailed(f"{server.name}: {scenario} answered errors: {report['errors']}")
    primary = report["operations"].get(report["primary"])
    return float(primary["count"] if primary else 0) / float(report["window_seconds"])


def run(args: argparse.Namespace, work: Path, servers: list[Server]) -> dict[str, Any]:
    token_secret, tag = secrets.token_urlsafe(32), secrets.token_hex(3)
    pool = [f"mc{tag}b{i}" for i in range(CHECKOUT_BUYERS)]
    readers = fixtures.read_buyers(tag, READS)
    started: dict[str, Server] = {}
    for side, enabled in (("on", "true"), ("off", "false")):
        database = work / f"{side}.db"
        asyncio.run(fixtures.register_buyers(database, [*readers, *pool]))
        server = start_service(
            f"service (metrics {side})",
            database,
            work / f"service-{side}.log",
            token_secret=token_secret,
            synchronous=args.synchronous,
            settings={"metrics": enabled},
        )
        servers.append(server)
        started[side] = server
    extras: dict[str, dict[str, Any]] = {}
    for side, server in started.items():
        server.wait_ready()
        server.wait_settled(SETTLE_SECONDS)
        reads, _ = asyncio.run(
            fixtures.prepare(
                server.base_url, token_secret, balance_buyers=[], top_up=0, reads=READS, tag=tag
            )
        )
        extras[side] = {"token_secret": token_secret, "reads": reads, "checkout_buyers": pool}
    results: dict[str, Any] = {"cells": [], "ratios": {}}
    index = 0
    for connections in args.connections:
        for scenario in SCENARIOS:
            measured: dict[str, list[float]] = {"on": [], "off": []}
            for side in ("on", "off", "off", "on"):
                index += 1
                extra = {**extras[side], "tag": f"{tag}c{index}"}
                throughput = measure(
                    started[side], scenario, connections, args, extra, work / f"cell-{index}.json"
                )
                measured[side].append(throughput)
                results["cells"].append(
                    {
                        "side": side,
                        "scenario": scenario,
                        "connections": connections,
                        "throughput": throughput,
                    }
                )
                print(
                    f"  {scenario:<8} {connections:>2} conns  metrics {side:<3}"
                    f" {throughput:>8,.1f} req/s",
                    flush=True,
                )
            on, off = (sum(measured[s]) / len(measured[s]) for s in ("on", "off"))
            ratio = on / off if off else 0.0
            results["ratios"][f"{scenario}@{connections}"] = ratio
            verdict = "ok" if ratio >= TARGET else "MISSED"
            print(
                f"{scenario} at {connections} connections: on {on:,.1f}, off {off:,.1f} req/s,"
                f" ratio {ratio:.3f} (target >= {TARGET}) {verdict}",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 3 s cells")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.duration = 1.0, 3.0
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as folder:
        try:
            results = run(args, Path(folder), servers)
        except (BenchmarkFailed, ServerFailed) as error:
            print(f"the benchmark could not run: {error}", file=sys.stderr)
            return 2
        finally:
            for server in servers:  # before their folder goes
                server.stop()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(ratio >= TARGET for ratio in results["ratios"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
