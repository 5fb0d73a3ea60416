"""The HTTP benchmark's load generator: one scenario at one concurrency, in its own process.

``python -m bench.loadgen SPEC.json`` runs ``concurrency`` workers on one aiohttp client session
(keep-alive connections, at most one per worker), each sending its scenario's requests back to
back: first for ``warmup`` seconds, not recorded, then for ``duration`` seconds, recorded. It
prints one JSON object on stdout: the latency of each kind of operation (successful ones only),
every error (any answer that is not 2xx, and any failed connection) by kind with a few samples,
the measured window, and the CPU seconds this process and the server used in it.

It never runs in the server's process: ``bench/http.py`` starts it as a separate program (the
server's peak memory and CPU are read from ``/proc``).

Scenarios (bodies, tokens and names as a real client would send them):

- ``checkout``: ``POST /payment-checkout``, XENDIT, two stores; new ``invoice_onmarket``
  numbers for every request, the buyers taken in turn from ``checkout_buyers`` (registered
  accounts), each request's token signed anew here with the server's ``token_secret``, as the
  service's own ``/auth`` would sign it.
- ``life``: a whole invoice life as one operation: checkout, ``POST /sandbox/invoices/{ref}/pay``
  (the sandbox then sends the gateway's callback to the service), and ``POST /invoice/done`` for
  each of the two stores (Basic ``onmarket``); each request's latency is recorded too.
- ``detail``: ``GET /invoice/detail?invoice=…`` of existing invoices, as their buyers.
- ``balance``: BALANCE checkouts, each worker cycling through its own share of the topped-up
  buyers (a buyer never has two checkouts in flight).
- ``bare_post`` / ``bare_get``: the bare aiohttp app's echo and GET (``bench/bare_app.py``), sent
  exactly like ``checkout`` and ``detail``.
- ``floor_post`` / ``floor_get``: the floor app's checkout and detail (``bench/floor_app.py``),
  sent exactly like ``checkout`` and ``detail`` too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from service.security import TokenClaims, issue_token

MAX_ERROR_SAMPLES = 5
REQUEST_TIMEOUT_SECONDS = 30.0
JSON_HEADERS = {"Content-Type": "application/json"}
PLATFORM_AUTH = "Basic " + base64.b64encode(b"onmarket:onmarket").decode()

SCENARIOS = (
    "checkout",
    "life",
    "detail",
    "balance",
    "bare_post",
    "bare_get",
    "floor_post",
    "floor_get",
)
PRIMARY = {
    "checkout": "checkout",
    "life": "life",
    "detail": "detail",
    "balance": "checkout",
    "bare_post": "post",
    "bare_get": "get",
    "floor_post": "post",
    "floor_get": "get",
}


class RequestFailed(Exception):
    """A request that did not answer 2xx (already counted as an error)."""


@dataclass
class Recorder:
    """Latencies of the operations started inside the measured window, and every error."""

    measure_from: float
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    last_end: float = 0.0

    def ok(self, name: str, started: float, ended: float) -> None:
        if started >= self.measure_from:
            self.latencies[name].append(ended - started)
            self.last_end = max(self.last_end, ended)

    def error(self, kind: str, detail: str, started: float) -> None:
        if started >= self.measure_from:
            self.errors[kind] += 1
            self.last_end = max(self.last_end, time.perf_counter())
            if self.errors[kind] == 1 and len(self.samples) < MAX_ERROR_SAMPLES:
                self.samples.append(f"{kind}: {detail[:300]}")  # the first of each kind


class Client:
    """Timed requests: each answer is recorded as a success (2xx) or an error, never dropped."""

    def __init__(self, session: aiohttp.ClientSession, recorder: Recorder) -> None:
        self.session = session
        self.recorder = recorder

    async def call(
        self,
        name: str,
        method: str,
        path: str,
        route: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str],
    ) -> bytes:
        started = time.perf_counter()
        try:
            async with self.session.request(method, path, data=body, headers=headers) as answer:
                status, content = answer.status, await answer.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            self.recorder.error(f"{method} {route} {type(error).__name__}", str(error), started)
            raise RequestFailed() from None
        if not 200 <= status < 300:
            detail = content.decode("utf-8", "replace")
            self.recorder.error(f"{method} {route} {status}", detail, started)
            raise RequestFailed()
        self.recorder.ok(name, started, time.perf_counter())
        return content


class Tokens:
    """Bearer tokens signed with the server's secret, made once per buyer."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        self._expires = datetime.now(UTC) + timedelta(days=1)
        self._made: dict[str, dict[str, str]] = {}

    def headers(self, username: str, content_type: bool = False) -> dict[str, str]:
        key = f"{username}\0{content_type}"
        made = self._made.get(key)
        if made is None:
            token = issue_token(TokenClaims(username, "buyer", None, self._expires), self._secret)
            made = {"Authorization": f"Bearer {token}"}
            if content_type:
                made.update(JSON_HEADERS)
            self._made[key] = made
        return made

    def fresh(self, username: str) -> dict[str, str]:
        """Headers for a buyer seen once: signed now, not kept."""
        token = issue_token(TokenClaims(username, "buyer", None, self._expires), self._secret)
        return {"Authorization": f"Bearer {token}", **JSON_HEADERS}


def checkout_body(prefix: str, source: str) -> bytes:
    """A two-store checkout (the README's example): 40,200 in total."""
    return orjson.dumps(
        {
            "total_amount": 40200,
            "service": "ONMARKET",
            "source": source,
            "transaction": [
                {
                    "amount": 10000,
                    "freight_charge": 5000,
                    "insurance_amount": 100,
                    "commission_onmarket": 1000,
                    "seller_username": "seller1",
                    "invoice_onmarket": f"{prefix}-1",
                },
                {
                    "amount": 20000,
                    "freight_charge": 5000,
                    "insurance_amount": 100,
                    "commission_onmarket": 1000,
                    "seller_username": "testing123",
                    "invoice_onmarket": f"{prefix}-2",
                },
            ],
        }
    )


Step = Callable[[Client, int, int], Awaitable[None]]


def make_step(spec: dict[str, Any], tokens: Tokens) -> Step:
    """One operation of the scenario for worker ``w``'s ``k``-th turn."""
    scenario, tag, concurrency = spec["scenario"], spec["tag"], spec["concurrency"]
    reads: list[list[str]] = spec.get("reads") or []
    buyers: list[str] = spec.get("buyers") or []
    # Registered buyers, taken in turn; each request's token is signed anew, as a new login's.
    pool: list[str] = list(spec.get("checkout_buyers") or [])

    def next_buyer(w: int, k: int) -> str:
        return pool[(w + int(concurrency) * k) % len(pool)]

    async def checkout(client: Client, w: int, k: int) -> None:
        headers = tokens.fresh(next_buyer(w, k))
        body = checkout_body(f"INV/HB/{tag}/{w}/{k}", "XENDIT")
        await client.call(
            "checkout", "POST", "/payment-checkout", "/payment-checkout", body=body, headers=headers
        )

    def poster(path: str) -> Step:
        async def post(client: Client, w: int, k: int) -> None:
            headers = tokens.fresh(next_buyer(w, k))
            body = checkout_body(f"INV/HB/{tag}/{w}/{k}", "XENDIT")
            await client.call("post", "POST", path, path, body=body, headers=headers)

        return post

    async def life(client: Client, w: int, k: int) -> None:
        started = time.perf_counter()
        prefix = f"INV/HL/{tag}/{w}/{k}"
        answer = orjson.loads(
            await client.call(
                "checkout",
                "POST",
                "/payment-checkout",
                "/payment-checkout",
                body=checkout_body(prefix, "XENDIT"),
                headers=tokens.fresh(next_buyer(w, k)),
            )
        )
        invoice, reference = answer["invoice"], answer["xendit_invoice"]
        pay = f"/sandbox/invoices/{reference}/pay"
        await client.call("pay", "POST", pay, "/sandbox/invoices/{ref}/pay", headers={})
        for line in (1, 2):
            body = orjson.dumps(
                {
                    "platform": "ONMARKET",
                    "invoice_id": invoice,
                    "invoice_onmarket": f"{prefix}-{line}",
                }
            )
            headers = {"Authorization": PLATFORM_AUTH, **JSON_HEADERS}
            await client.call(
                "done", "POST", "/invoice/done", "/invoice/done", body=body, headers=headers
            )
        client.recorder.ok("life", started, time.perf_counter())

    def reader(path: str, name: str) -> Step:
        async def read(client: Client, w: int, k: int) -> None:
            invoice, username = reads[(w + concurrency * k) % len(reads)]
            headers = tokens.headers(username)
            await client.call(name, "GET", f"{path}?invoice={invoice}", path, headers=headers)

        return read

    async def balance(client: Client, w: int, k: int) -> None:
        # Worker w takes buyers w, w + concurrency, w + 2 * concurrency, …: a buyer never has
        # two checkouts in flight, as a real buyer would not.
        mine = len(range(w, len(buyers), concurrency))
        buyer = buyers[w + concurrency * (k % mine)]
        body = checkout_body(f"INV/HB/{tag}/{w}/{k}", "BALANCE")
        headers = tokens.headers(buyer, content_type=True)
        await client.call(
            "checkout", "POST", "/payment-checkout", "/payment-checkout", body=body, headers=headers
        )

    steps: dict[str, Step] = {
        "checkout": checkout,
        "life": life,
        "detail": reader("/invoice/detail", "detail"),
        "balance": balance,
        "bare_post": poster("/echo"),
        "bare_get": reader("/detail", "get"),
        "floor_post": poster("/floor/checkout"),
        "floor_get": reader("/floor/detail", "get"),
    }
    if scenario in ("detail", "bare_get", "floor_get") and not reads:
        raise SystemExit(f"scenario {scenario} needs reads")
    if scenario in ("checkout", "life", "bare_post", "floor_post") and not pool:
        raise SystemExit(f"scenario {scenario} needs checkout_buyers")
    if scenario == "balance" and len(buyers) < concurrency:
        raise SystemExit("scenario balance needs at least one buyer per connection")
    return steps[scenario]


def cpu_seconds_of(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores of the machine spent busy (not idle, not waiting for I/O)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is in user already


def summary(latencies: list[float]) -> dict[str, float | int]:
    ordered = sorted(latencies)
    count = len(ordered)

    def rank(share: float) -> float:
        return ordered[max(0, math.ceil(share * count) - 1)] * 1000

    return {
        "count": count,
        "p50_ms": rank(0.50),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "max_ms": ordered[-1] * 1000,
        "mean_ms": sum(ordered) / count * 1000,
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    concurrency, warmup, duration = spec["concurrency"], spec["warmup"], spec["duration"]
    step = make_step(spec, Tokens(spec["token_secret"]))
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    server_pid = spec.get("server_pid")
    async with aiohttp.ClientSession(
        spec["base_url"], connector=connector, timeout=timeout
    ) as session:
        started = time.perf_counter()
        measure_from, end = started + warmup, started + warmup + duration
        recorder = Recorder(measure_from)
        client = Client(session, recorder)
        marks: dict[str, float | None] = {}

        async def mark_window_start() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            marks["cpu"], marks["server_cpu"] = time.process_time(), cpu_seconds_of(server_pid)
            marks["machine"] = machine_busy_seconds()

        async def worker(w: int) -> None:
            k = 0
            while time.perf_counter() < end:
                with contextlib.suppress(RequestFailed):
                    await step(client, w, k)
                k += 1

        marker = asyncio.create_task(mark_window_start())
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        await marker
        cpu, server_cpu = time.process_time(), cpu_seconds_of(server_pid)
        machine = machine_busy_seconds()
    window = max(recorder.last_end, end) - measure_from
    before_server, before_machine = marks.get("server_cpu"), marks.get("machine")
    operations = {name: summary(values) for name, values in recorder.latencies.items()}
    if spec["scenario"] == "life":  # every request of the lives, whichever step
        requests = [v for step in ("checkout", "pay", "done") for v in recorder.latencies[step]]
        if requests:
            operations["request"] = summary(requests)
    return {
        "scenario": spec["scenario"],
        "concurrency": concurrency,
        "primary": PRIMARY[spec["scenario"]],
        "event_loop": spec.get("event_loop", "asyncio"),
        "window_seconds": window,
        "operations": operations,
        "requests": sum(
            len(values) for name, values in recorder.latencies.items() if name != "life"
        ),
        "errors": {
            "total": sum(recorder.errors.values()),
            "by_kind": dict(recorder.errors),
            "samples": recorder.samples,
        },
        "loadgen_cpu_share": (cpu - (marks["cpu"] or 0.0)) / window,
        "server_cpu_share": (
            (server_cpu - before_server) / window
            if server_cpu is not None and before_server is not None
            else None
        ),
        # Everything the machine ran in the window (this process and the server included): what
        # is left after those two is other programs' load, the noise in the figures.
        "machine_cpu_share": (
            (machine - before_machine) / window
            if machine is not None and before_machine is not None
            else None
        ),
    }


def event_loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """uvloop if it is installed (it is not a dependency), else asyncio's own loop."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return "asyncio", None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return "uvloop", factory


def run_with_loop(coroutine: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    _, factory = event_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.loadgen SPEC.json", file=sys.stderr)
        return 2
    spec = orjson.loads(Path(argv[0]).read_bytes())
    if spec["scenario"] not in SCENARIOS:
        print(f"unknown scenario {spec['scenario']!r}", file=sys.stderr)
        return 2
    spec["event_loop"] = event_loop_factory()[0]
    result = run_with_loop(run(spec))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
