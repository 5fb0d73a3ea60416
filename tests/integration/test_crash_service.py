"""``kill -9`` of the running service under load loses no acknowledged request.

The service runs as a real process (``python -m service serve``: development mode, sandbox
gateway, ``synchronous=FULL``) on one SQLite file. Twelve clients in this process run
checkout → sandbox pay → done flows against it, each step acknowledged only by a 2xx answer.
At a random moment the process is SIGKILLed, started again on the same file, and checked:

* every acknowledged step is there: the invoice of each acknowledged checkout answers
  ``GET /invoice/detail`` with the acknowledged lines, PAID or later once its payment was
  acknowledged, each acknowledged done's transaction COMPLETED and the seller credited in the
  ledger; and nothing is more advanced than what was ever asked for;
* nothing half-written is visible: event positions are gap-free, every invoice row has its
  events and every invoice stream its row, each ledger entry has its event, each balance is
  the sum of its entries and all balances sum to 0, no checkpoint is beyond the head, each
  store number belongs to one invoice only; and ``python -m service verify`` passes on the file
  as the kill left it (hash chain intact, views equal a fresh replay);
* a step whose answer never came (in flight at the kill) may have happened or not, but its
  retry answers consistently: a checkout retried with its ``Idempotency-Key`` answers the stored
  invoice if it was written and creates exactly one otherwise; a payment retried with its
  payment id is a duplicate exactly when the first one was recorded; a done is "already
  completed" exactly when the first one was recorded.

``CRASH_ROUNDS`` (default 20) sets the number of kills; ``CRASH_SEED`` replays a run's random
choices (the seed is printed, and shown with any failure).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.cli import environment, run_cli

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "20"))
WORKERS = 12
KILL_AFTER = (0.2, 1.5)  # seconds of load before the kill
READY_TIMEOUT = 20.0
REQUEST_TIMEOUT = 15.0

BUYER = "usernew1"
SELLER = "seller1"
PLATFORM_AUTH = {"Authorization": "Basic " + base64.b64encode(b"onmarket:onmarket").decode()}
INVOICE_RANK = {"PENDING": 0, "PAID": 1, "COMPLETED": 2}
LINE_RANK = {"PENDING": 0, "PAID": 1, "COMPLETED": 2}


# -- the service process ------------------------------------------------------------------------


# On Linux the service dies with this process even if pytest itself is killed: the child asks
# for SIGKILL at its parent's death (prctl PR_SET_PDEATHSIG, kept across exec), then execs
# ``python -m service serve`` in place (same pid).
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL); "
    "os.getppid() == int(sys.argv[1]) or sys.exit('the test process is gone'); "
    "os.execv(sys.executable, [sys.executable, '-m', 'service', 'serve'])"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcesses:
    """Starts ``python -m service serve`` on one database; every process it started is
    killed by ``kill_all`` (the fixture's teardown), whatever happened."""

    def __init__(self, workdir: Path, database: Path, synchronous: str = "FULL") -> None:
        self.workdir, self.database, self.synchronous = workdir, database, synchronous
        self.started: list[subprocess.Popen[bytes]] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = workdir / "serve-0.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start a process on a free port and wait until it answers ``/health``."""
        for _ in range(3):  # another program may take the free port before the service binds it
            process = self._spawn(_free_port())
            if await self._ready(process):
                return
            if "address already in use" not in self.log.read_text().lower():
                break
        raise AssertionError(f"the service did not start:\n{self.log.read_text()}")

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        self.port = port
        self.log = self.workdir / f"serve-{len(self.started)}.log"
        env = {
            **environment(),  # the repository importable, no INVOICE_* of this shell
            "INVOICE_MODE": "development",  # the dev accounts and the sandbox's pay endpoint
            "INVOICE_GATEWAY": "sandbox",
            "INVOICE_DATABASE": str(self.database),
            "INVOICE_HOST": "127.0.0.1",
            "INVOICE_PORT": str(port),
            "INVOICE_PUBLIC_BASE_URL": self.base_url,
            "INVOICE_SYNCHRONOUS": self.synchronous,
            "INVOICE_LOG_LEVEL": "WARNING",
            "INVOICE_LOG_FORMAT": "json",
        }
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid())]
                if sys.platform == "linux"
                else [sys.executable, "-m", "service", "serve"],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.started.append(self.process)
        return self.process

    async def _ready(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return False
                try:
                    async with session.get(f"{self.base_url}/health") as response:
                        if response.status == 200 and process.poll() is None:
                            return True
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        process.kill()
        process.wait(timeout=10)
        return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.process is not None
        assert self.process.poll() is None, self.log.read_text()
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=10)

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcesses]:
    processes = ServiceProcesses(tmp_path, tmp_path / "data" / "invoices.db")
    try:
        yield processes
    finally:
        processes.kill_all()


# -- the clients' model of what happened -----------------------------------------------------


@dataclass
class Flow:
    """One checkout → pay → done story, and what the service acknowledged of it."""

    key: str  # its Idempotency-Key, and the prefix of its store numbers
    body: dict[str, Any]
    steps: int  # how far it goes: 1 checkout, 2 and pay, 3 and done every line
    answer: dict[str, Any] | None = None  # the checkout's 2xx answer
    paid: bool = False  # the payment was acknowledged
    done: set[str] = field(default_factory=set)  # lines whose done was acknowledged
    sent: set[str] = field(default_factory=set)  # every step ever sent: checkout, pay, a number
    unknown: str | None = None  # the step whose answer never came

    @property
    def numbers(self) -> list[str]:
        return [line["invoice_onmarket"] for line in self.body["transaction"]]

    @property
    def invoice(self) -> str:
        assert self.answer is not None
        invoice: str = self.answer["invoice"]
        return invoice

    @property
    def payment_id(self) -> str:
        return f"pay-{self.key}"

    def share(self, number: str) -> int:
        """What the seller is credited when this line is done."""
        (line,) = [line for line in self.body["transaction"] if line["invoice_onmarket"] == number]
        return int(line["amount"] + line["freight_charge"] - line["commission_onmarket"])


def new_flow(key: str, rng: random.Random) -> Flow:
    lines: list[dict[str, Any]] = [
        {
            "amount": rng.randrange(10, 500) * 100 + n,  # distinct within the invoice
            "freight_charge": rng.randrange(0, 50) * 100,
            "insurance_amount": rng.choice([0, 100, 250]),
            "commission_onmarket": rng.randrange(0, 10) * 100,
            "seller_username": SELLER,
            "invoice_onmarket": f"{key}/{n}",
        }
        for n in range(rng.choice([1, 1, 2, 3]))
    ]
    total = sum(x["amount"] + x["freight_charge"] + x["insurance_amount"] for x in lines)
    body = {"total_amount": total, "service": "ONMARKET", "source": "XENDIT", "transaction": lines}
    return Flow(key, body, steps=rng.choices([1, 2, 3], weights=[1, 1, 3])[0])


@dataclass
class Round:
    number: int
    killed: bool = False
    in_flight: int = 0  # steps sent whose answer never came: they may have happened or not
    refused: int = 0  # steps refused at connect after the kill: they never reached it
    acknowledged: int = 0
    anomalies: list[str] = field(default_factory=list)


class Api:
    """The service's HTTP API, as the clients call it."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, tokens: dict[str, str]):
        self.session, self.base_url, self.tokens = session, base_url, tokens

    async def call(
        self, method: str, path: str, user: str | None = None, **options: Any
    ) -> tuple[int, Any]:
        if user is not None:
            options["headers"] = {
                **options.get("headers", {}),
                "Authorization": f"Bearer {self.tokens[user]}",
            }
        async with self.session.request(method, self.base_url + path, **options) as response:
            return response.status, await response.json(content_type=None)

    async def checkout(self, flow: Flow) -> tuple[int, Any]:
        return await self.call(
            "POST",
            "/payment-checkout",
            BUYER,
            json=flow.body,
            headers={"Idempotency-Key": flow.key},
        )

    async def pay(self, flow: Flow) -> tuple[int, Any]:
        reference = flow.answer["xendit_invoice"] if flow.answer else ""
        return await self.call(
            "POST", f"/sandbox/invoices/{reference}/pay", json={"payment_id": flow.payment_id}
        )

    async def done(self, flow: Flow, number: str) -> tuple[int, Any]:
        body = {"platform": "ONMARKET", "invoice_id": flow.invoice, "invoice_onmarket": number}
        return await self.call("POST", "/invoice/done", json=body, headers=PLATFORM_AUTH)

    async def detail(self, invoice: str) -> dict[str, Any]:
        status, body = await self.call("GET", "/invoice/detail", BUYER, params={"invoice": invoice})
        assert status == 200, (invoice, status, body)
        assert isinstance(body, dict)
        return body


async def login(session: aiohttp.ClientSession, base_url: str) -> dict[str, str]:
    tokens = {}
    for user in (BUYER, SELLER):
        credentials = {"username": user, "password": user}
        async with session.post(f"{base_url}/auth", json=credentials) as response:
            assert response.status == 200, await response.text()
            tokens[user] = (await response.json())["token"]
    return tokens


@asynccontextmanager
async def client_session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=WORKERS * 2)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


# -- the load and the kill ----------------------------------------------------------------------


async def _step(
    state: Round, flow: Flow, step: str, request: Awaitable[tuple[int, Any]]
) -> Any | None:
    """Run one step; its answer if acknowledged, else None (with the step noted as unknown)."""
    flow.sent.add(step)
    try:
        status, body = await request
    except aiohttp.ClientConnectorError as error:  # the connection was refused: not sent
        if not state.killed:
            state.anomalies.append(f"{flow.key} {step}: {error!r} before the kill")
        flow.unknown = step
        state.refused += 1
        return None
    except (aiohttp.ClientError, TimeoutError) as error:
        if not state.killed:
            state.anomalies.append(f"{flow.key} {step}: {error!r} before the kill")
        flow.unknown = step
        state.in_flight += 1
        return None
    if not 200 <= status < 300:
        state.anomalies.append(f"{flow.key} {step}: {status} {body}")
        flow.unknown = step
        return None
    state.acknowledged += 1
    return body


async def _client(api: Api, state: Round, flows: list[Flow], rng: random.Random, name: str) -> None:
    """Run flows one after another until a step is not acknowledged (the kill)."""
    for n in itertools.count():
        flow = new_flow(f"crash-r{state.number}-{name}-{n}", rng)
        flows.append(flow)
        answer = await _step(state, flow, "checkout", api.checkout(flow))
        if answer is None:
            return
        flow.answer = answer
        if flow.steps >= 2:
            if await _step(state, flow, "pay", api.pay(flow)) is None:
                return
            flow.paid = True
        if flow.steps >= 3:
            for number in flow.numbers:
                if await _step(state, flow, number, api.done(flow, number)) is None:
                    return
                flow.done.add(number)


async def run_load_and_kill(
    service: ServiceProcesses,
    tokens: dict[str, str],
    state: Round,
    flows: list[Flow],
    rng: random.Random,
) -> float:
    """``WORKERS`` clients until SIGKILL, a random while after they start; the delay."""
    delay = rng.uniform(*KILL_AFTER)
    seeds = [rng.randrange(2**32) for _ in range(WORKERS)]
    async with client_session() as session:
        api = Api(session, service.base_url, tokens)
        clients = [
            asyncio.create_task(_client(api, state, flows, random.Random(seed), f"w{w}"))
            for w, seed in enumerate(seeds)
        ]
        try:
            await asyncio.sleep(delay)
            state.killed = True
            service.kill()
            async with asyncio.timeout(REQUEST_TIMEOUT + 5):
                await asyncio.gather(*clients)
        finally:
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
    return delay


# -- what the file holds --------------------------------------------------------------------


@dataclass
class Snapshot:
    """The parts of the database the checks read, from one read transaction."""

    invoices_by_number: dict[str, list[str]]  # store number -> invoices created with it
    keyed: set[str]  # invoices an Idempotency-Key's recorded answer names
    paid: Counter[str]  # invoice -> InvoicePaid events
    completed: dict[str, dict[str, int]]  # invoice -> {store number: seller amount}
    view_status: dict[str, str]  # invoice -> status column of invoice_view


def read_database(database: Path) -> Snapshot:
    """Read the file directly and check that nothing half-written is visible."""
    with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        conn.execute("BEGIN")  # one snapshot for every query below
        count, low, head = conn.execute(
            "SELECT COUNT(*), COALESCE(MIN(position), 1), COALESCE(MAX(position), 0) FROM events"
        ).fetchone()
        assert (count, low) == (head, 1), (
            f"positions are not gap-free: {count} events, {low}..{head}"
        )
        streams = {
            stream: (version, position, count)
            for stream, version, position, count in conn.execute(
                "SELECT stream_id, MAX(version), MAX(position), COUNT(*) FROM events"
                " GROUP BY stream_id"
            )
        }
        for stream, (version, _, count) in streams.items():
            assert version == count, f"{stream}: versions are not contiguous"

        invoices_by_number: dict[str, list[str]] = defaultdict(list)
        created: set[str] = set()
        for stream, version, data in conn.execute(
            "SELECT stream_id, version, data FROM events WHERE type = 'InvoiceCreated'"
        ):
            event = json.loads(data)
            assert stream == f"invoice-{event['invoice']}", stream
            assert version == 1, (stream, version)
            created.add(event["invoice"])
            for line in event["transactions"]:
                invoices_by_number[line["invoice_onmarket"]].append(event["invoice"])
        invoice_streams = {s[len("invoice-") :] for s in streams if s.startswith("invoice-")}
        assert invoice_streams == created, "an invoice stream without its InvoiceCreated"

        view: dict[str, str] = {}
        for invoice, status, version, position in conn.execute(
            "SELECT invoice, status, version, position FROM invoice_view"
        ):
            assert invoice in created, f"{invoice} is in the view but not in the log"
            expected = streams[f"invoice-{invoice}"][:2]
            assert (version, position) == expected, (
                f"{invoice}: the view is at version/position {(version, position)},"
                f" its stream at {expected}"
            )
            view[invoice] = status
        assert set(view) == created, f"invoices in the log, not in the view: {created - set(view)}"

        paid: Counter[str] = Counter()
        for (data,) in conn.execute("SELECT data FROM events WHERE type = 'InvoicePaid'"):
            paid[json.loads(data)["invoice"]] += 1
        completed: dict[str, dict[str, int]] = defaultdict(dict)
        for (data,) in conn.execute("SELECT data FROM events WHERE type = 'TransactionCompleted'"):
            event = json.loads(data)
            number = event["invoice_onmarket"]
            assert number not in completed[event["invoice"]], f"{number} completed twice"
            completed[event["invoice"]][number] = event["seller_amount"]

        # The ledger: entries belong to events of their type, balances are their sums, Σ = 0.
        orphans = conn.execute(
            "SELECT COUNT(*) FROM ledger_entries l LEFT JOIN events e ON e.position = l.position"
            " WHERE e.type IS NOT l.event_type"
        ).fetchone()[0]
        assert orphans == 0, f"{orphans} ledger entries without their event"
        sums = dict(
            conn.execute("SELECT account, SUM(amount) FROM ledger_entries GROUP BY account")
        )
        balances = dict(conn.execute("SELECT account, balance FROM account_balances"))
        assert balances == sums, "account balances differ from their ledger entries"
        assert sum(balances.values()) == 0, f"the ledger does not balance: {sum(balances.values())}"
        negative = {
            account: balance
            for account, balance in balances.items()
            if balance < 0 and account.startswith(("buyer:", "escrow:", "seller:"))
        }
        assert not negative, negative
        seller_credits: dict[str, int] = dict(
            conn.execute(
                "SELECT invoice, SUM(amount) FROM ledger_entries WHERE account = ?"
                " AND event_type = 'TransactionCompleted' GROUP BY invoice",
                (f"seller:{SELLER}",),
            )
        )
        assert seller_credits == {
            invoice: sum(lines.values()) for invoice, lines in completed.items()
        }, "the seller's ledger entries do not match the completed transactions"
        escrow_in = dict(
            conn.execute(
                "SELECT invoice, SUM(amount) FROM ledger_entries"
                " WHERE event_type = 'InvoicePaid' AND account LIKE 'escrow:%' GROUP BY invoice"
            )
        )
        assert set(escrow_in) == set(paid), "a payment without its ledger entries, or the reverse"

        beyond = conn.execute(
            "SELECT name, position FROM checkpoints WHERE position > ?", (head,)
        ).fetchall()
        assert not beyond, f"checkpoints beyond the head {head}: {beyond}"

        keyed = {
            json.loads(data)["response"]["invoice"]
            for (data,) in conn.execute(
                "SELECT data FROM events WHERE type = 'IdempotentRequestRecorded'"
            )
        }
        assert keyed <= created, (
            f"Idempotency-Keys answer invoices not in the log: {keyed - created}"
        )
        conn.execute("COMMIT")
    return Snapshot(invoices_by_number, keyed, paid, completed, view)


# -- the checks after a restart -----------------------------------------------------------------


async def retry_unknown(api: Api, flows: list[Flow], before: Snapshot) -> Counter[str]:
    """Retry each step whose answer never came; its answer must fit what the file holds.
    Counts each retried step as written or not written by its first attempt."""
    retried = [flow for flow in flows if flow.unknown]
    return Counter(await asyncio.gather(*(_retry(api, flow, before) for flow in retried)))


async def _retry(api: Api, flow: Flow, before: Snapshot) -> str:
    step, flow.unknown = flow.unknown, None
    if step == "checkout":
        existing = sorted({i for n in flow.numbers for i in before.invoices_by_number[n]})
        assert len(existing) <= 1, f"{flow.key}: several invoices {existing}"
        status, answer = await api.checkout(flow)
        assert status == 200, (flow.key, status, answer)
        if existing:  # it was written: the retry answers the stored invoice
            assert answer["invoice"] == existing[0], (flow.key, existing, answer)
        assert await api.checkout(flow) == (200, answer), f"{flow.key}: a second answer"
        flow.answer = answer
        written = bool(existing)
    elif step == "pay":
        written = before.paid[flow.invoice] > 0
        status, answer = await api.pay(flow)
        assert status == 200, (flow.key, status, answer)
        outcome = answer["callback"]["body"]["message"]
        assert outcome == ("DUPLICATE" if written else "PAID"), (flow.key, written, answer)
        flow.paid = True
    else:  # a done, named by its store number
        assert step is not None
        written = step in before.completed.get(flow.invoice, {})
        status, answer = await api.done(flow, step)
        if written:
            expected = (400, "TRANSACTION_ALREADY_COMPLETED")
            assert (status, answer.get("code")) == expected, (flow.key, step, answer)
        else:
            assert status == 200, (flow.key, step, status, answer)
        flow.done.add(step)
    kind = "done" if step not in ("checkout", "pay") else step
    return f"{kind} {'written' if written else 'not written'}"


def check_flows_in_file(flows: list[Flow], snapshot: Snapshot) -> None:
    """Every acknowledged step of every flow so far is in the log and the views."""
    for flow in flows:
        mine = {i for n in flow.numbers for i in snapshot.invoices_by_number.get(n, [])}
        assert len(mine) <= 1, f"{flow.key}: one key, several invoices {sorted(mine)}"
        assert mine <= snapshot.keyed, f"{flow.key}: {mine} written without its key's answer"
        if flow.answer is None:
            continue  # never acknowledged: it may exist (killed after the commit) or not
        invoice = flow.invoice
        assert mine == {invoice}, f"{flow.key}: acknowledged {invoice}, the log has {mine}"
        paid = snapshot.paid[invoice]
        assert paid <= 1, f"{invoice} paid {paid} times"
        assert paid == 1 or not flow.paid, f"{invoice}: acknowledged payment lost"
        assert paid == 0 or "pay" in flow.sent, f"{invoice}: paid, but never asked to be"
        completed = snapshot.completed.get(invoice, {})
        lost = flow.done - set(completed)
        assert not lost, f"{invoice}: acknowledged done of {sorted(lost)} lost"
        assert set(completed) <= flow.sent, f"{invoice}: completed without being asked"
        assert all(completed[n] == flow.share(n) for n in completed), (invoice, completed)
        status = snapshot.view_status[invoice]
        assert INVOICE_RANK[status] >= _least_status(flow), (invoice, status)


def _least_status(flow: Flow) -> int:
    if flow.done and flow.done == set(flow.numbers):
        return INVOICE_RANK["COMPLETED"]
    return INVOICE_RANK["PAID"] if flow.paid else INVOICE_RANK["PENDING"]


async def check_flows_over_http(api: Api, flows: list[Flow]) -> int:
    """The acknowledged flows answer GET /invoice/detail as acknowledged; the steps checked."""
    gate = asyncio.Semaphore(WORKERS)

    async def check(flow: Flow) -> int:
        assert flow.answer is not None
        async with gate:
            detail = await api.detail(flow.invoice)
        assert detail["xendit_invoice"] == flow.answer["xendit_invoice"], (flow.key, detail)
        assert detail["amount"] == flow.body["total_amount"], (flow.key, detail)
        assert INVOICE_RANK[detail["status"]] >= _least_status(flow), (flow.key, detail)
        lines = {line["invoice_onmarket"]: line for line in detail["transaction"]}
        assert list(lines) == flow.numbers, (flow.key, detail)
        for number, line in lines.items():
            least = "COMPLETED" if number in flow.done else "PAID" if flow.paid else "PENDING"
            assert LINE_RANK[line["status"]] >= LINE_RANK[least], (flow.key, number, detail)
            assert line["status"] != "COMPLETED" or number in flow.sent, (flow.key, number)
        return 1 + flow.paid + len(flow.done)

    checked = await asyncio.gather(*(check(flow) for flow in flows if flow.answer is not None))
    status, balance = await api.call("GET", "/balance", SELLER)
    assert status == 200, balance
    credited = sum(flow.share(number) for flow in flows for number in flow.done)
    assert balance["seller_balance"] >= credited, (balance, credited)
    return sum(checked)


def verify_in_background(
    service: ServiceProcesses,
) -> asyncio.Task[subprocess.CompletedProcess[str]]:
    """``python -m service verify`` on the database, in a process of its own."""
    return asyncio.create_task(
        asyncio.to_thread(run_cli, service.workdir, "verify", "--db", str(service.database))
    )


async def check_after_restart(
    api: Api, service: ServiceProcesses, flows: list[Flow], latest: list[Flow]
) -> tuple[int, Counter[str]]:
    """The checks after one restart; ``latest`` (the last round's flows) are also read back
    over the API. Returns the steps read back, and the retries' outcomes."""
    before = read_database(service.database)  # the file as the crash left it, recovered
    check_flows_in_file(flows, before)
    outcomes = await retry_unknown(api, flows, before)  # all of them in ``latest``
    after = read_database(service.database)
    check_flows_in_file(flows, after)
    read_back = await check_flows_over_http(api, latest)
    # The seller's balance is exactly what the completed transactions credited.
    status, balance = await api.call("GET", "/balance", SELLER)
    assert status == 200, balance
    assert balance["seller_balance"] == sum(sum(done.values()) for done in after.completed.values())
    return read_back, outcomes


# -- the test -----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_kill_9_under_load_loses_no_acknowledged_request(
    service: ServiceProcesses,
) -> None:
    """20 SIGKILLs of the service under load: every acknowledged request survives each one."""
    seed = int(os.environ.get("CRASH_SEED") or random.randrange(2**32))
    print(f"crash test: CRASH_SEED={seed} CRASH_ROUNDS={ROUNDS}")
    rng = random.Random(seed)
    flows: list[Flow] = []
    rounds: list[Round] = []
    read_back = 0  # acknowledged steps read back over the API after their round's kill
    retried: Counter[str] = Counter()
    started = time.monotonic()

    await service.start()
    async with client_session() as session:
        tokens = await login(session, service.base_url)  # signed: they outlive restarts
    for number in range(ROUNDS):
        state = Round(number)
        first = len(flows)
        delay = await run_load_and_kill(service, tokens, state, flows, rng)
        rounds.append(state)
        where = f"seed {seed}, kill {number}"
        assert not state.anomalies, f"{where}: {state.anomalies[:5]}"
        # verify reads the file as the kill left it while the service restarts on it.
        verify = verify_in_background(service)
        killed_at = time.monotonic()
        try:
            await service.start()
            restarted_at = time.monotonic()
            async with client_session() as session:
                api = Api(session, service.base_url, tokens)
                checked = await check_after_restart(api, service, flows, flows[first:])
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from error
        finally:
            result = await verify
        assert result.returncode == 0, f"{where}: verify failed:\n{result.stdout}{result.stderr}"
        print(
            f"kill {number} after {delay:.2f}s: {state.acknowledged} steps acknowledged,"
            f" {state.in_flight} in flight, {state.refused} refused; restarted in"
            f" {restarted_at - killed_at:.2f}s, checked in {time.monotonic() - restarted_at:.2f}s"
        )
        read_back += checked[0]
        retried.update(checked[1])

    # A last look over the API at everything ever acknowledged, then a clean stop and verify.
    async with client_session() as session:
        api = Api(session, service.base_url, tokens)
        read_at_end = await check_flows_over_http(api, flows)
    assert sum(flow.answer is not None for flow in flows) > 0, "nothing was acknowledged"
    assert service.stop() == 0, service.log.read_text()
    final = run_cli(service.workdir, "verify", "--db", str(service.database))
    assert final.returncode == 0, final.stdout + final.stderr

    print(
        f"crash test: {ROUNDS} kills in {time.monotonic() - started:.1f}s:"
        f" {sum(r.acknowledged for r in rounds)} steps acknowledged"
        f" ({sum(f.answer is not None for f in flows)} invoices),"
        f" {sum(r.in_flight for r in rounds)} in flight at the kills"
        f" (+{sum(r.refused for r in rounds)} refused), retried: {dict(sorted(retried.items()))},"
        f" {read_back} acknowledged steps read back over the API after their kill"
        f" and {read_at_end} at the end"
    )


# -- the checker itself can fail ------------------------------------------------------------


def _acknowledged_flow() -> Flow:
    """A two-line flow whose checkout, payment and first line's done were acknowledged."""
    lines = [
        {
            "amount": 10000 + n,
            "freight_charge": 500,
            "insurance_amount": 100,
            "commission_onmarket": 1000,
            "seller_username": SELLER,
            "invoice_onmarket": f"checker/{n}",
        }
        for n in range(2)
    ]
    body = {"total_amount": 21201, "service": "ONMARKET", "source": "XENDIT", "transaction": lines}
    flow = Flow("checker", body, steps=3, paid=True, done={"checker/0"})
    flow.answer = {"invoice": "OMchecker00001", "xendit_invoice": "ref-1"}
    flow.sent = {"checkout", "pay", "checker/0"}
    return flow


def _snapshot_of(flow: Flow) -> Snapshot:
    """What the file holds when every acknowledged step of ``flow`` is there."""
    invoice = flow.invoice
    return Snapshot(
        invoices_by_number=defaultdict(list, {n: [invoice] for n in flow.numbers}),
        keyed={invoice},
        paid=Counter({invoice: 1}),
        completed=defaultdict(dict, {invoice: {n: flow.share(n) for n in flow.done}}),
        view_status={invoice: "PAID"},
    )


LOSSES = {
    "checkout lost": lambda s, f: s.invoices_by_number.clear(),
    "payment lost": lambda s, f: s.paid.clear(),
    "paid twice": lambda s, f: s.paid.update({f.invoice: 1}),
    "done lost": lambda s, f: s.completed.clear(),
    "seller paid wrong": lambda s, f: s.completed[f.invoice].update({f.numbers[0]: 1}),
    "done never asked": lambda s, f: s.completed[f.invoice].update({f.numbers[1]: 1}),
    "second invoice": lambda s, f: s.invoices_by_number[f.numbers[1]].append("OMother"),
    "view behind": lambda s, f: s.view_status.update({f.invoice: "PENDING"}),
    "key not recorded": lambda s, f: s.keyed.clear(),
}


def test_the_checker_accepts_a_file_holding_every_acknowledged_step() -> None:
    flow = _acknowledged_flow()
    check_flows_in_file([flow], _snapshot_of(flow))


@pytest.mark.parametrize("loss", list(LOSSES))
def test_the_checker_notices_a_lost_or_invented_step(loss: str) -> None:
    """Each way a file can break an acknowledgement fails the check (it is not vacuous)."""
    flow = _acknowledged_flow()
    snapshot = _snapshot_of(flow)
    LOSSES[loss](snapshot, flow)
    with pytest.raises(AssertionError):
        check_flows_in_file([flow], snapshot)
