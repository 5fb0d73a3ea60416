"""End-to-end HTTP benchmark: the service over real HTTP, against a bare aiohttp app, in one run.

The service runs as users run it: ``python -m service serve`` in its own process (development
mode, sandbox gateway, ``synchronous=FULL`` unless ``--synchronous`` says otherwise, JSON logs at
INFO to a file), on a fresh database and on a copy of a database pre-filled with 1,000,000
events. A bare aiohttp app (``bench/bare_app.py``) runs the same way. The load comes from
``bench/loadgen.py``, an aiohttp client in a separate process, with keep-alive connections.

Scenarios, each at 1, 16 and 64 connections, ``--warmup`` seconds unrecorded, then
``--duration`` seconds measured:

1. ``checkout``: XENDIT checkouts of two stores, a new buyer and new store invoice numbers each;
2. ``life``: checkout, sandbox pay (whose callback the service receives), done for both stores,
   counted as one operation, each request's latency recorded too;
3. ``detail``: ``GET /invoice/detail`` of existing invoices;
4. ``balance``: BALANCE checkouts from 256 topped-up buyers;

and, on the bare app, a POST echo of the checkout's body and a GET of the detail's answer; on
the floor app (``bench/floor_app.py``), a checkout and a detail that do only what the stack makes
unavoidable (token, marshmallow, one fsync'd append or one read by key, one log line): the most
the service could reach if all its own work were free. Checkout and detail run on the
pre-filled database too. The cells are interleaved (for each number of connections: bare POST,
floor POST, checkout, checkout pre-filled, bare GET, floor GET, detail, detail pre-filled, life,
balance), so that the machine's drifting speed affects compared figures alike.

Every answer that is not 2xx is an error: counted, sampled and printed, never dropped. Latencies
are those of the successful requests. Peak RSS is the server's ``VmHWM`` during the cell.

Targets, at 64 connections: checkout throughput >= 0.35 x bare POST and p99 <= 20 ms; detail
throughput >= 0.5 x bare GET and p99 <= 5 ms; at 1,000,000 events checkout and detail p50 and p99
<= 1.2 x empty; no errors. The exit status is 1 if a target is missed, 2 if the benchmark could
not run. ``--quick`` (2 s cells, a 100,000-event pre-fill) checks that it works in about 2
minutes.

Run it as ``python -m bench.http`` (``make bench`` does). ``python bench/http.py`` works too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

if not __package__:
    # Run as ``python bench/http.py``: its folder comes first on sys.path, where this very file
    # would be found as the standard library's ``http`` by everything that imports that (aiohttp,
    # urllib). Put the project there instead and use the ``bench`` package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import fixtures
from bench.prefill import (
    DEFAULT_CACHE,
    copy_database,
    ensure_prefill,
    sample_invoices,
)
from bench.servers import (
    ROOT,
    Server,
    ServerFailed,
    child_environment,
    log_summary,
    start_bare,
    start_floor,
    start_service,
)

QUICK = {"duration": 2.0, "warmup": 0.5, "prefill": 100_000}
DEFAULTS = {"duration": 6.0, "warmup": 2.0, "prefill": 1_000_000}
ENVIRONMENT = {
    "duration": "BENCH_HTTP_DURATION",
    "warmup": "BENCH_HTTP_WARMUP",
    "prefill": "BENCH_HTTP_PREFILL",
}
RESULTS = ROOT / "bench" / "results"
LOADGEN_SLACK_SECONDS = 120.0
SATURATED_LOADGEN = 0.9  # of one core: the generator, not the server, may be the limit
SETTLE_SECONDS = 300.0

CHECKOUT_VS_BARE = 0.35
CHECKOUT_P99_MS = 20.0
DETAIL_VS_BARE = 0.5
DETAIL_P99_MS = 5.0
LARGE_VS_EMPTY = 1.2

SCENARIOS = ("checkout", "life", "detail", "balance")
# Registered buyers the checkout and life scenarios cycle through (see ``run``).
CHECKOUT_BUYERS = 4096
LABELS = {
    "bare_post": "bare POST /echo",
    "bare_get": "bare GET /detail",
    "floor_post": "floor POST /floor/checkout",
    "floor_get": "floor GET /floor/detail",
    "checkout": "checkout XENDIT",
    "life": "life: checkout>pay>done x2",
    "detail": "GET /invoice/detail",
    "balance": "checkout BALANCE",
}
# The order within each number of connections: compared cells next to each other.
PLAN = (
    ("bare", "bare_post", "checkout"),
    ("floor", "floor_post", "checkout"),
    ("empty", "checkout", "checkout"),
    ("large", "checkout", "checkout"),
    ("bare", "bare_get", "detail"),
    ("floor", "floor_get", "detail"),
    ("empty", "detail", "detail"),
    ("large", "detail", "detail"),
    ("empty", "life", "life"),
    ("empty", "balance", "balance"),
)


class BenchmarkFailed(RuntimeError):
    """The benchmark could not measure (not a missed target)."""


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    prefill: int
    concurrency: tuple[int, ...]
    scenarios: tuple[str, ...]
    synchronous: str
    reads: int
    large_reads: int
    buyers: int
    json_path: Path
    cache: Path
    keep: bool
    quick: bool

    @property
    def target_connections(self) -> int:
        return 64 if 64 in self.concurrency else max(self.concurrency)


def parse_settings(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="2 s cells, a 100,000-event pre-fill")
    parser.add_argument("--duration", type=float, help="measured seconds per cell (default 6)")
    parser.add_argument("--warmup", type=float, help="unrecorded seconds before each (default 2)")
    parser.add_argument(
        "--prefill", type=int, help="events in the pre-filled database, 0 for none (1,000,000)"
    )
    parser.add_argument("--concurrency", default="1,16,64", help="connections, comma-separated")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="a subset of " + ",".join(SCENARIOS)
    )
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL", "EXTRA"])
    parser.add_argument("--reads", type=int, default=512, help="invoices the detail reads create")
    parser.add_argument(
        "--large-reads",
        type=int,
        default=512,
        help="invoices read in the pre-filled database, spread over its log; as many as --reads,"
        " so that both databases meet the service's read caches alike and only the log differs",
    )
    parser.add_argument("--buyers", type=int, default=256, help="buyers of the BALANCE checkouts")
    parser.add_argument("--json", type=Path, help="where to write the results as JSON")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the pre-fill's cache")
    parser.add_argument("--keep", action="store_true", help="keep the databases and server logs")
    args = parser.parse_args(argv)

    def value(name: str, kind: Callable[[str], Any]) -> Any:
        given = getattr(args, name)
        if given is not None:
            return given
        if ENVIRONMENT[name] in os.environ:
            return kind(os.environ[ENVIRONMENT[name]])
        return (QUICK if args.quick else DEFAULTS)[name]

    scenarios = tuple(name for name in args.scenarios.split(",") if name)
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    concurrency = tuple(sorted({int(c) for c in args.concurrency.split(",") if c}))
    if not concurrency or min(concurrency) < 1:
        parser.error("--concurrency needs positive numbers")
    if args.reads < 1 or args.large_reads < 1 or args.buyers < max(concurrency):
        parser.error("--reads and --large-reads must be >= 1, --buyers >= the most connections")
    default_json = RESULTS / ("http-quick.json" if args.quick else "http.json")
    return Settings(
        duration=value("duration", float),
        warmup=value("warmup", float),
        prefill=value("prefill", int),
        concurrency=concurrency,
        scenarios=scenarios,
        synchronous=args.synchronous,
        reads=args.reads,
        large_reads=args.large_reads,
        buyers=args.buyers,
        json_path=args.json or default_json,
        cache=args.cache,
        keep=args.keep,
        quick=args.quick,
    )


def say(text: str = "") -> None:
    print(text, flush=True)


# -- running the cells ------------------------------------------------------------------------


def planned_cells(settings: Settings) -> list[tuple[str, str, int]]:
    """(database, scenario, connections) in the order they run."""
    cells = []
    for connections in settings.concurrency:
        for database, scenario, needs in PLAN:
            if needs not in settings.scenarios:
                continue
            if database == "large" and not settings.prefill:
                continue
            cells.append((database, scenario, connections))
    return cells


def run_loadgen(spec: dict[str, Any], spec_path: Path) -> dict[str, Any]:
    """One cell: the load generator in its own process; its JSON report."""
    spec_path.write_text(json.dumps(spec))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", str(spec_path)],
        cwd=ROOT,
        env=child_environment({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(
            timeout=spec["warmup"] + spec["duration"] + LOADGEN_SLACK_SECONDS
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise BenchmarkFailed(f"the load generator failed ({process.returncode}):\n{err}")
    result: dict[str, Any] = json.loads(out)
    return result


def measure_cell(
    server: Server,
    database: str,
    scenario: str,
    connections: int,
    settings: Settings,
    spec_extra: dict[str, Any],
    spec_path: Path,
) -> dict[str, Any]:
    server.check_alive()
    reset = server.reset_peak_rss()
    spec = {
        "base_url": server.base_url,
        "scenario": scenario,
        "concurrency": connections,
        "warmup": settings.warmup,
        "duration": settings.duration,
        "server_pid": server.pid,
        **spec_extra,
    }
    report = run_loadgen(spec, spec_path)
    peak = server.peak_rss_kib()
    server.check_alive()
    window = report["window_seconds"]
    primary = report["operations"].get(report["primary"])
    cell: dict[str, Any] = {
        "server": database if database in ("bare", "floor") else "service",
        "database": None if database == "bare" else database,
        "scenario": scenario,
        "label": LABELS[scenario],
        "connections": connections,
        "synchronous": None if database == "bare" else settings.synchronous,
        "throughput": (primary["count"] if primary else 0) / window,
        "unit": "lives/s" if scenario == "life" else "req/s",
        "latency_ms": _latency(primary),
        "errors": report["errors"],
        "peak_rss_mib": peak / 1024 if peak is not None else None,
        "peak_rss_scope": "cell" if reset else "process lifetime",
        "server_cpu_share": report["server_cpu_share"],
        "loadgen_cpu_share": report["loadgen_cpu_share"],
        "others_cpu_share": _others(report),
        "window_seconds": window,
        "event_loop": report["event_loop"],
    }
    if scenario == "life":
        cell["requests_per_second"] = report["requests"] / window
        cell["request_latency_ms"] = _latency(report["operations"].get("request"))
        cell["steps_ms"] = {
            step: _latency(report["operations"].get(step)) for step in ("checkout", "pay", "done")
        }
    if database in ("empty", "large"):
        cell["log_head_position_after"] = server.get_json("/health")["head_position"]
    return cell


def _others(report: dict[str, Any]) -> float | None:
    """The CPU other programs used in the window, in cores: the figures' noise."""
    machine, server = report.get("machine_cpu_share"), report["server_cpu_share"]
    if machine is None or server is None:
        return None
    return max(0.0, float(machine) - float(server) - float(report["loadgen_cpu_share"]))


def _latency(stats: dict[str, Any] | None) -> dict[str, float] | None:
    if not stats:
        return None
    return {key[: -len("_ms")]: value for key, value in stats.items() if key.endswith("_ms")}


# -- the report -------------------------------------------------------------------------------


def find(
    cells: list[dict[str, Any]], database: str | None, scenario: str, connections: int
) -> dict[str, Any] | None:
    for cell in cells:
        if (cell["database"], cell["scenario"], cell["connections"]) == (
            database,
            scenario,
            connections,
        ):
            return cell
    return None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def cell_line(cell: dict[str, Any], large_name: str) -> str:
    latency = cell["latency_ms"] or {}
    database = {"empty": "empty", "large": large_name, "floor": "own file", None: "-"}[
        cell["database"]
    ]
    sync = cell["synchronous"] or "n/a"
    saturated = "*" if cell["loadgen_cpu_share"] >= SATURATED_LOADGEN else " "
    rss = "-" if cell["peak_rss_mib"] is None else f"{cell['peak_rss_mib']:,.0f} MiB"
    return (
        f"  {cell['label']:<27} {database:<11} {cell['connections']:>5}  {sync:<5}"
        f" {cell['throughput']:>9,.1f} {cell['unit']:<7}"
        f" {_ms(latency.get('p50')):>8} {_ms(latency.get('p99')):>8} {_ms(latency.get('max')):>8}"
        f" {cell['errors']['total']:>6} {rss:>9} {_share(cell['server_cpu_share']):>7}"
        f" {_share(cell['loadgen_cpu_share']):>6}{saturated}"
        f" {_share(cell['others_cpu_share']):>6}"
    )


def print_cells(cells: list[dict[str, Any]], settings: Settings, large_name: str) -> None:
    say(
        f"  {'scenario':<27} {'database':<11} {'conns':>5}  {'sync':<5} {'throughput':>17}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6} {'peak RSS':>9}"
        f" {'server':>7} {'load':>6}  {'others':>6}"
    )
    order = ["bare_post", "floor_post", "checkout", "bare_get", "floor_get", "detail"]
    for scenario in [*order, "life", "balance"]:
        for database in ("bare", "floor", "empty", "large"):
            for connections in settings.concurrency:
                key = None if database == "bare" else database
                cell = find(cells, key, scenario, connections)
                if cell is None:
                    continue
                say(cell_line(cell, large_name))
                if scenario == "life":
                    request = cell["request_latency_ms"] or {}
                    say(
                        f"  {'  its requests':<27} {'':<11} {'':>5}  {cell['synchronous']:<5}"
                        f" {cell['requests_per_second']:>9,.1f} {'req/s':<7}"
                        f" {_ms(request.get('p50')):>8} {_ms(request.get('p99')):>8}"
                        f" {_ms(request.get('max')):>8}"
                    )
    say(
        "  Throughput counts successful operations; latencies are theirs. CPU, in shares of one"
        f" core ({os.cpu_count()} in all):\n  server = the server process, load = the load"
        " generator (* >= 90 %: it may be the limit),\n  others = every other program on the"
        " machine (the figures' noise). Peak RSS: the server's VmHWM in the cell (reset before"
        " it)."
    )
    for cell in cells:
        if cell["errors"]["total"]:
            where = cell["database"] or "bare"
            say(
                f"  ERRORS in {cell['label']} ({where}, {cell['connections']} conns):"
                f" {cell['errors']['by_kind']}"
            )
            for sample in cell["errors"]["samples"]:
                say(f"    e.g. {sample}")


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def compute_ratios(cells: list[dict[str, Any]], settings: Settings) -> dict[str, dict[int, Any]]:
    def figure(database: str | None, scenario: str, c: int, what: str) -> float | None:
        cell = find(cells, database, scenario, c)
        if cell is None:
            return None
        if what == "throughput":
            return float(cell["throughput"])
        return None if cell["latency_ms"] is None else float(cell["latency_ms"][what])

    Cell = tuple[str | None, str]  # (database, scenario)
    throughputs: list[tuple[str, Cell, Cell]] = [
        ("checkout/bare_post throughput", ("empty", "checkout"), (None, "bare_post")),
        ("detail/bare_get throughput", ("empty", "detail"), (None, "bare_get")),
        ("floor_post/bare_post throughput", ("floor", "floor_post"), (None, "bare_post")),
        ("floor_get/bare_get throughput", ("floor", "floor_get"), (None, "bare_get")),
        ("checkout/floor_post throughput", ("empty", "checkout"), ("floor", "floor_post")),
        ("detail/floor_get throughput", ("empty", "detail"), ("floor", "floor_get")),
    ]
    ratios: dict[str, dict[int, Any]] = {}
    for c in settings.concurrency:
        for name, numerator, denominator in throughputs:
            ratios.setdefault(name, {})[c] = ratio(
                figure(*numerator, c, "throughput"), figure(*denominator, c, "throughput")
            )
        for scenario in ("checkout", "detail"):
            for what in ("p50", "p99", "throughput"):
                ratios.setdefault(f"{scenario} {what} large/empty", {})[c] = ratio(
                    figure("large", scenario, c, what), figure("empty", scenario, c, what)
                )
    return ratios


def print_ratios(ratios: dict[str, dict[int, Any]], settings: Settings, large_name: str) -> None:
    header = "".join(f"{f'{c} conns':>10}" for c in settings.concurrency)
    say(f"  {'(service synchronous=' + settings.synchronous + ')':<46}{header}")
    names = {
        "checkout/bare_post throughput": "checkout / bare POST, throughput",
        "detail/bare_get throughput": "detail / bare GET, throughput",
        "floor_post/bare_post throughput": "floor POST / bare POST, throughput",
        "floor_get/bare_get throughput": "floor GET / bare GET, throughput",
        "checkout/floor_post throughput": "checkout / floor POST, throughput",
        "detail/floor_get throughput": "detail / floor GET, throughput",
    }
    for scenario in ("checkout", "detail"):
        for what in ("p50", "p99", "throughput"):
            names[f"{scenario} {what} large/empty"] = f"{scenario} {what}, {large_name} / empty"
    for key, name in names.items():
        values = ratios.get(key, {})
        if all(v is None for v in values.values()):
            continue
        row = "".join(
            f"{'-' if values.get(c) is None else format(values[c], '.2f'):>10}"
            for c in settings.concurrency
        )
        say(f"  {name:<46}{row}")


def evaluate_targets(
    cells: list[dict[str, Any]],
    ratios: dict[str, dict[int, Any]],
    settings: Settings,
    large_name: str,
) -> list[dict[str, Any]]:
    c = settings.target_connections

    def p99(scenario: str) -> float | None:
        cell = find(cells, "empty", scenario, c)
        return None if cell is None or cell["latency_ms"] is None else cell["latency_ms"]["p99"]

    rows: list[dict[str, Any]] = [
        _target(
            "checkout throughput / bare POST",
            ratios.get("checkout/bare_post throughput", {}).get(c),
            ">=",
            CHECKOUT_VS_BARE,
        ),
        _target("checkout p99 (ms)", p99("checkout"), "<=", CHECKOUT_P99_MS),
        _target(
            "detail throughput / bare GET",
            ratios.get("detail/bare_get throughput", {}).get(c),
            ">=",
            DETAIL_VS_BARE,
        ),
        _target("detail p99 (ms)", p99("detail"), "<=", DETAIL_P99_MS),
    ]
    if settings.prefill:
        for scenario in ("checkout", "detail"):
            for what in ("p50", "p99"):
                rows.append(
                    _target(
                        f"{scenario} {what} at {large_name} / empty",
                        ratios.get(f"{scenario} {what} large/empty", {}).get(c),
                        "<=",
                        LARGE_VS_EMPTY,
                    )
                )
    errors = sum(cell["errors"]["total"] for cell in cells)
    rows.append(_target("errors (not 2xx, or failed), all cells", errors, "<=", 0))
    return rows


def _target(name: str, measured: float | None, op: str, goal: float) -> dict[str, Any]:
    met = None if measured is None else measured >= goal if op == ">=" else measured <= goal
    return {"target": name, "measured": measured, "op": op, "goal": goal, "met": met}


def print_targets(rows: list[dict[str, Any]], settings: Settings) -> None:
    c = settings.target_connections
    say(
        f"  {f'at {c} connections, service synchronous={settings.synchronous}':<46}"
        f" {'measured':>10} {'target':>9}  result"
    )
    for row in rows:
        measured = row["measured"]
        shown = (
            "-"
            if measured is None
            else f"{measured:,}"
            if isinstance(measured, int)
            else f"{measured:,.2f}"
        )
        result = {True: "PASS", False: "MISS", None: "not measured"}[row["met"]]
        goal = f"{row['op']} {row['goal']:g}"
        say(f"  {row['target']:<46} {shown:>10} {goal:>9}  {result}")


def print_floor(ratios: dict[str, dict[int, Any]], c: int) -> None:
    """What the stack alone allows, beside the targets: a target above the floor's own ratio
    cannot be met by any work on the service's code."""

    def shown(name: str) -> str:
        value = ratios.get(name, {}).get(c)
        return "-" if value is None else f"{value:.2f}"

    say(
        f"  the stack's floor at {c} connections (bench/floor_app.py: token, marshmallow, one"
        " fsync'd append or one read by key, one log line):"
    )
    say(
        f"    floor POST / bare POST {shown('floor_post/bare_post throughput')}"
        f" (checkout target {CHECKOUT_VS_BARE:g}); checkout reaches"
        f" {shown('checkout/floor_post throughput')} of the floor"
    )
    say(
        f"    floor GET / bare GET {shown('floor_get/bare_get throughput')}"
        f" (detail target {DETAIL_VS_BARE:g}); detail reaches"
        f" {shown('detail/floor_get throughput')} of the floor"
    )


# -- the run ----------------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)  # so that the finally blocks stop the servers


def _large_name(events: int) -> str:
    return f"{events / 1e6:g}M events" if events >= 1_000_000 else f"{events // 1000}k events"


def run(settings: Settings, work: Path, servers: list[Server], results: dict[str, Any]) -> None:
    token_secret = secrets.token_urlsafe(32)
    tag = secrets.token_hex(3)
    cells_planned = planned_cells(settings)
    per_cell = settings.warmup + settings.duration
    say(
        f"HTTP benchmark: {len(cells_planned)} cells of {settings.warmup:g} s warm-up +"
        f" {settings.duration:g} s measured (about {len(cells_planned) * (per_cell + 1) / 60:.1f}"
        f" min of load), connections {', '.join(map(str, settings.concurrency))},"
        f" synchronous={settings.synchronous}"
    )

    # The buyers the checkout and life scenarios take turns with: registered accounts (a token
    # must name one), each used about once every CHECKOUT_BUYERS / throughput seconds, longer
    # than the service remembers an account, so a checkout finds no warm cache of its buyer.
    pool = [f"hc{tag}b{i}" for i in range(CHECKOUT_BUYERS)]
    large: Server | None = None
    large_extra: dict[str, Any] = {}
    if settings.prefill:
        started = time.perf_counter()
        prefill = ensure_prefill(
            settings.prefill,
            settings.cache,
            token_secret=token_secret,
            synchronous=settings.synchronous,
            say=say,
        )
        if prefill.reused:
            say(
                f"pre-filled database: reusing the cached {prefill.events:,}-event file"
                f" {prefill.path} ({prefill.size_bytes / 2**20:,.0f} MiB, built {prefill.built_at}:"
                f" generated in {prefill.generate_seconds:.0f}s, views rebuilt in"
                f" {prefill.rebuild_seconds:.0f}s, made ready in {prefill.catch_up_seconds:.0f}s)"
            )
        else:
            say(
                f"pre-filled database: built {prefill.events:,} events in"
                f" {time.perf_counter() - started:.0f}s ({prefill.size_bytes / 2**20:,.0f} MiB);"
                " the next run reuses it"
            )
        copy = work / "large.db"
        copy_seconds = copy_database(prefill.path, copy)
        reads = sample_invoices(copy, settings.large_reads)
        # Every token must name an account: the sampled invoices' buyers (the generated log
        # has none) and the checkout buyers.
        asyncio.run(
            fixtures.register_buyers(copy, sorted({buyer for _, buyer in reads} | set(pool)))
        )
        say(
            f"  copied it for this run in {copy_seconds:.1f}s; detail reads {len(reads):,}"
            " invoices spread over the whole log"
        )
        results["prefill"] = {
            "events": prefill.events,
            "path": str(prefill.path),
            "reused": prefill.reused,
            "generate_seconds": prefill.generate_seconds,
            "rebuild_seconds": prefill.rebuild_seconds,
            "ready_seconds": prefill.catch_up_seconds,
            "size_bytes": prefill.size_bytes,
            "copy_seconds": copy_seconds,
            "reads": len(reads),
        }
        large = start_service(
            "service (pre-filled)",
            copy,
            work / "service-large.log",
            token_secret=token_secret,
            synchronous=settings.synchronous,
        )
        servers.append(large)
        large_extra = {"token_secret": token_secret, "reads": reads, "checkout_buyers": pool}

    empty_db = work / "empty.db"
    buyers = [f"hb{tag}buyer{i}" for i in range(settings.buyers)]
    read_buyers = fixtures.read_buyers(tag, settings.reads)
    asyncio.run(fixtures.register_buyers(empty_db, [*buyers, *read_buyers, *pool]))
    empty = start_service(
        "service (empty)",
        empty_db,
        work / "service-empty.log",
        token_secret=token_secret,
        synchronous=settings.synchronous,
    )
    servers.append(empty)
    for server in servers:
        ready = server.wait_ready()
        settled = server.wait_settled(SETTLE_SECONDS)
        head = server.get_json("/health")["head_position"]
        say(
            f"{server.name}: pid {server.pid}, ready in {ready:.1f}s, idle after {settled:.1f}s,"
            f" {head:,} events in its log"
        )

    reads, detail_body = asyncio.run(
        fixtures.prepare(
            empty.base_url,
            token_secret,
            balance_buyers=buyers if "balance" in settings.scenarios else [],
            top_up=10**10,
            reads=settings.reads,
            tag=tag,
        )
    )
    say(
        f"set-up: {settings.reads} invoices for the detail reads,"
        f" {len(buyers) if 'balance' in settings.scenarios else 0} buyers topped up"
    )
    detail_file = work / "detail.json"
    detail_file.write_text(json.dumps(detail_body))
    bare = start_bare(work / "bare.log", detail_file)
    floor = start_floor(
        work / "floor.log",
        work / "floor.db",
        detail_file,
        token_secret=token_secret,
        synchronous=settings.synchronous,
    )
    servers += [bare, floor]
    for server in (bare, floor):
        server.wait_ready()
        server.wait_settled(SETTLE_SECONDS)

    empty_extra = {
        "token_secret": token_secret,
        "reads": reads,
        "buyers": buyers,
        "checkout_buyers": pool,
    }
    targets = {
        "bare": (bare, empty_extra),
        "floor": (floor, empty_extra),
        "empty": (empty, empty_extra),
    }
    if large is not None:
        targets["large"] = (large, large_extra)
    large_name = _large_name(settings.prefill)
    cells: list[dict[str, Any]] = results["cells"]
    for index, (database, scenario, connections) in enumerate(cells_planned, 1):
        server, extra = targets[database]
        cell = measure_cell(
            server,
            database,
            scenario,
            connections,
            settings,
            {**extra, "tag": f"{tag}c{index}"},
            work / f"cell-{index}.json",
        )
        cells.append(cell)
        latency = cell["latency_ms"] or {}
        where = {"bare": "bare app", "floor": "floor app", "empty": "empty", "large": large_name}[
            database
        ]
        sync = cell["synchronous"] or "n/a"
        say(
            f"  [{index:>2}/{len(cells_planned)}] {cell['label']:<27} {where:<11}"
            f" {connections:>2} conns  sync={sync:<4} {cell['throughput']:>8,.1f} {cell['unit']:<7}"
            f" p50 {_ms(latency.get('p50'))} p99 {_ms(latency.get('p99'))} ms,"
            f" {cell['errors']['total']} errors"
        )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "http",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "duration_seconds": settings.duration,
            "warmup_seconds": settings.warmup,
            "connections": list(settings.concurrency),
            "scenarios": list(settings.scenarios),
            "synchronous": settings.synchronous,
            "prefill_events": settings.prefill,
            "quick": settings.quick,
        },
        "cells": [],
    }
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        if settings.keep:
            work = Path(tempfile.mkdtemp(prefix="bench-http-"))
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
        try:
            run(settings, work, servers, results)
        except (BenchmarkFailed, ServerFailed, fixtures.SetupFailed) as error:
            say(f"FAILED: {error}")
            return 2
        except (KeyboardInterrupt, SystemExit) as stop:
            say("interrupted: stopping the servers")
            return 130 if isinstance(stop, KeyboardInterrupt) else int(stop.code or 1)
        finally:
            for server in servers:
                server.stop()
        say()
        for server in servers:
            lines, levels = log_summary(server.log_path)
            detail = ", ".join(f"{count:,} {level}" for level, count in sorted(levels.items()))
            say(f"{server.name} log: {lines:,} lines ({detail})")
            results.setdefault("server_logs", {})[server.name] = dict(levels)
        if settings.keep:
            say(f"databases and logs kept in {work}")

    cells = results["cells"]
    large_name = _large_name(results.get("prefill", {}).get("events", settings.prefill))
    say()
    say(
        "results (service: python -m service serve, sandbox gateway, INFO JSON log to a file;"
        f" load: aiohttp client, {cells[0]['event_loop'] if cells else '?'}, own process,"
        f" keep-alive; {settings.warmup:g} s warm-up + {settings.duration:g} s per cell)"
    )
    print_cells(cells, settings, large_name)
    ratios = compute_ratios(cells, settings)
    say()
    say("ratios")
    print_ratios(ratios, settings, large_name)
    rows = evaluate_targets(cells, ratios, settings, large_name)
    say()
    say("targets")
    print_targets(rows, settings)
    c = settings.target_connections
    bare_post, bare_get = find(cells, None, "bare_post", c), find(cells, None, "bare_get", c)
    if bare_post and bare_get and bare_post["latency_ms"] and bare_get["latency_ms"]:
        say(
            f"  for scale, the bare app at {c} connections: POST p99"
            f" {_ms(bare_post['latency_ms']['p99'])} ms, GET p99"
            f" {_ms(bare_get['latency_ms']['p99'])} ms"
        )
    print_floor(ratios, c)
    if settings.quick:
        say("  (a --quick run: 2 s cells and a smaller pre-fill; indicative figures only)")

    elapsed = time.perf_counter() - started
    results["ratios"] = {
        name: {str(c): value for c, value in values.items()} for name, values in ratios.items()
    }
    results["targets"] = rows
    results["total_seconds"] = elapsed
    settings.json_path.parent.mkdir(parents=True, exist_ok=True)
    settings.json_path.write_text(json.dumps(results, indent=2) + "\n")
    say()
    say(f"results written to {settings.json_path}; the whole run took {elapsed / 60:.1f} min")
    return 1 if any(row["met"] is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
