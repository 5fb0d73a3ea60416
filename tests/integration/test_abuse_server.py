"""A real ``python -m service serve`` against slow, silent and greedy clients on raw sockets.

One server process for the module, started with 1-second limits (keep-alive, body read, unread
answer) through its ``INVOICE_*`` variables, so each case is over in a few seconds. Each case
checks that the abuse ends in a 4xx or a connection the server closed, within the limit plus a
margin; that a normal request is served meanwhile; and, reading the server's
``/proc/<pid>/status`` (VmRSS, VmHWM), that its memory stays bounded. The server's log must hold
no 500 and no unhandled error when it is stopped.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cli import environment

LIMIT = 1.0  # seconds: the server's keep-alive, body read and unread-answer timeouts
MARGIN = 1.5  # seconds allowed on top of a limit (timers, a loaded 2-core machine)
MIB = 1024 * 1024


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the server process, in KiB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])  # "  123456 kB"
        return fields["VmRSS"], fields["VmHWM"]

    def reset_peak(self) -> None:
        """Start VmHWM afresh from the current VmRSS (Linux 4.0+), to measure one case's peak."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def sockets(self) -> int:
        """How many sockets the server process holds open (its listening socket included)."""
        count = 0
        for fd in Path(f"/proc/{self.process.pid}/fd").iterdir():
            with suppress(OSError):  # closed while we looked
                count += fd.readlink().name.startswith("socket:")
        return count

    def connect(self, *, receive_buffer: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def health_seconds(self) -> float:
        """How long a normal GET /health takes; it must succeed."""
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as answer:
            assert answer.status == 200
            assert json.loads(answer.read())["status"] == "ok"
        return time.perf_counter() - started

    def wait_for_sockets(self, at_most: int, within: float) -> float:
        """Seconds until the server holds at most ``at_most`` sockets; fails after ``within``."""
        started = time.monotonic()
        while (held := self.sockets()) > at_most:
            assert time.monotonic() - started < within, f"still {held} sockets after {within} s"
            time.sleep(0.05)
        return time.monotonic() - started


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service on a free port, with 1-second limits; stopped (and its log checked) after."""
    folder = tmp_path_factory.mktemp("abuse")
    port = _free_port()
    log = folder / "serve.log"
    env = {
        **environment(),
        "INVOICE_DATABASE": str(folder / "invoices.db"),
        "INVOICE_PORT": str(port),
        "INVOICE_KEEPALIVE_TIMEOUT_SECONDS": str(LIMIT),
        "INVOICE_REQUEST_READ_TIMEOUT_SECONDS": str(LIMIT),
        "INVOICE_SEND_TIMEOUT_SECONDS": str(LIMIT),
        "INVOICE_LOG_FORMAT": "json",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = Server(process, port, log)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, log.read_text()
            try:
                running.health_seconds()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    output_text = log.read_text()
    assert '"status": 500' not in output_text, output_text[-3000:]
    assert "unhandled error" not in output_text, output_text[-3000:]


def closed_by_server(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    started = time.monotonic()
    received = b""
    sock.settimeout(0.1)
    while time.monotonic() - started < within:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    else:
        raise AssertionError(f"the server kept the connection open for {within} s: {received!r}")
    return received, time.monotonic() - started


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# -- slow clients ---------------------------------------------------------------------------------


def test_headers_sent_one_byte_at_a_time_are_cut_off(server: Server) -> None:
    """Slowloris: a request whose headers come one byte every 50 ms never completes; the server
    closes the connection once the keep-alive timeout passes, and serves others meanwhile."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: abcdefghij\r\n" * 20 + b"\r\n"
    with server.connect() as sock:
        sock.setblocking(False)
        started = time.monotonic()
        closed_after = None
        served_meanwhile = None
        for byte in request:
            time.sleep(0.05)
            try:
                sock.send(bytes([byte]))
                if sock.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except BlockingIOError:
                pass  # nothing to read yet
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            if served_meanwhile is None and time.monotonic() - started > LIMIT / 2:
                served_meanwhile = server.health_seconds()
    assert closed_after is not None, "the whole request was sent: make it longer"
    assert LIMIT * 0.8 <= closed_after < LIMIT + MARGIN
    assert served_meanwhile is not None
    assert served_meanwhile < 1.0
    print(
        f"\nslowloris: closed after {closed_after:.2f} s;"
        f" /health meanwhile {served_meanwhile:.3f} s"
    )


@pytest.mark.parametrize("pace", ["stalls", "trickles"])
def test_a_body_that_never_finishes_answers_408_and_is_closed(server: Server, pace: str) -> None:
    """Headers promise 1000 bytes; 100 come, then nothing (or a byte every 100 ms, forever).
    408 REQUEST_TIMEOUT once the read timeout passes, then the connection is closed."""
    before = server.sockets()
    with server.connect() as sock:
        sock.sendall(
            b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b" " * 100
        )
        started = time.monotonic()
        received = b""
        closed_after = None
        while closed_after is None and time.monotonic() - started < 2 * LIMIT + MARGIN:
            if pace == "trickles":
                try:
                    sock.send(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.monotonic() - started
                    break
            sock.settimeout(0.1)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed_after = time.monotonic() - started
            received += chunk
    assert closed_after is not None, f"still open after {2 * LIMIT + MARGIN} s"
    assert status_of(received) == 408, received
    head, _, body = received.partition(b"\r\n\r\n")
    assert json.loads(body) == {"message": "Request Timeout", "code": "REQUEST_TIMEOUT"}
    assert b"X-Request-ID" in head
    # The answer comes after the read timeout; the close, after draining the rest as long again.
    assert closed_after < 2 * LIMIT + MARGIN
    server.wait_for_sockets(before, within=MARGIN)
    print(f"\nbody that {pace}: 408, closed after {closed_after:.2f} s")


# -- many connections -----------------------------------------------------------------------------


def open_many(server: Server, count: int) -> list[socket.socket]:
    """``count`` connected sockets, connected from 16 threads at once."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda _: server.connect(), range(count)))


def test_a_thousand_idle_connections_do_not_starve_a_normal_request(server: Server) -> None:
    """1000 connections: 500 silent, 500 with half a request line. A normal request is served
    at once while they are open; the keep-alive timeout closes them all; memory stays bounded."""
    baseline = server.sockets()
    server.reset_peak()
    rss_before, _ = server.memory_kib()
    with ExitStack() as stack:
        started = time.monotonic()
        sockets = [stack.enter_context(sock) for sock in open_many(server, 1000)]
        opened = time.monotonic() - started
        for sock in sockets[::2]:
            sock.sendall(b"POST /payment-checkout HT")
        # Count until all are accepted, at least once: on a loaded machine opening them can take
        # half the keep-alive limit, and the first ones are not closed before the whole limit.
        held = server.sockets() - baseline
        while held < 1000 and time.monotonic() - started < LIMIT / 2:
            held = max(held, server.sockets() - baseline)
        served = server.health_seconds()
        rss_held, peak_held = server.memory_kib()
        closed = server.wait_for_sockets(baseline, within=LIMIT + MARGIN + opened)
        assert served < 1.0
        assert held > 900  # nearly all at once
        rss_after, _ = server.memory_kib()
        # Every connection must read as closed (EOF or reset) from our side too.
        for sock in sockets[:50]:
            sock.settimeout(1)
            with suppress(ConnectionResetError):
                assert sock.recv(1024) == b""
    growth_mib = (peak_held - rss_before) / 1024
    assert growth_mib < 64
    print(
        f"\n1000 idle: opened in {opened:.2f} s, server held {held}, /health {served:.3f} s,"
        f" all closed {closed:.2f} s later; RSS {rss_before / 1024:.1f} -> {rss_held / 1024:.1f}"
        f" -> {rss_after / 1024:.1f} MiB"
    )


def test_a_client_that_never_reads_its_answers_is_dropped(server: Server) -> None:
    """20,000 pipelined requests from a client that never reads (a 4 KiB receive buffer): the
    answers pile up until the socket buffers are full; the kernel then drops the connection
    after the send timeout (TCP_USER_TIMEOUT), and the server serves others meanwhile."""
    baseline = server.sockets()
    server.reset_peak()
    rss_before, _ = server.memory_kib()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with server.connect(receive_buffer=4096) as sock:
        sock.setblocking(False)
        pending = memoryview(request * 20_000)
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            try:
                pending = pending[sock.send(pending) :]
            except BlockingIOError:  # the server stopped reading: its queue is full
                time.sleep(0.01)
        served = server.health_seconds()
        dropped = server.wait_for_sockets(baseline, within=LIMIT + 2 * MARGIN + 5)
        rss_after, rss_peak = server.memory_kib()
    assert served < 1.0
    assert (rss_peak - rss_before) / 1024 < 64
    print(
        f"\nnever reads: {len(request) * 20_000 - len(pending):,} bytes of requests taken,"
        f" /health meanwhile {served:.3f} s, connection dropped after {dropped:.2f} s;"
        f" RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB (peak {rss_peak / 1024:.1f})"
    )


def test_compressed_bodies_that_expand_past_the_limit_cost_little_memory(server: Server) -> None:
    """Ten gzip bombs at once (20 KB each, 20 MB once expanded): 413 each, and the server's
    peak memory grows by a few MiB per bomb (the 1 MiB limit and a decompressed chunk), far from
    the 200 MB they expand to: decompression stops at the limit."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(b"{" + b" " * 20_000_000) + compressor.flush()
    request = (
        b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nConnection: close\r\n"
        + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
        + bomb
    )
    server.reset_peak()
    _, peak_before = server.memory_kib()

    def send_bomb(_: int) -> bytes:
        with server.connect() as sock:
            sock.sendall(request)
            return closed_by_server(sock, within=LIMIT + 2 * MARGIN)[0]

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(send_bomb, range(10)))
    assert {status_of(answer) for answer in answers} == {413}
    _, peak_after = server.memory_kib()
    assert (peak_after - peak_before) / 1024 < 10 * 5
    print(
        f"\n10 gzip bombs: 413 each;"
        f" peak RSS {peak_before / 1024:.1f} -> {peak_after / 1024:.1f} MiB"
    )


def test_fifty_large_bodies_at_once_cost_bounded_memory(server: Server) -> None:
    """50 clients each send 90% of a 1,000,000-byte body and stop: the server holds what came
    (about 45 MB), answers each 408 after the read timeout, and is back to its baseline of
    connections; its peak memory grows by about what was sent, not more."""
    baseline = server.sockets()
    server.reset_peak()
    rss_before, peak_before = server.memory_kib()
    head = (
        b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    with ExitStack() as stack:
        sockets = [stack.enter_context(sock) for sock in open_many(server, 50)]
        for sock in sockets:  # the server reads every body as it comes, so none blocks long
            sock.sendall(head + b" " * 900_000)
        served = server.health_seconds()
        answers = [closed_by_server(sock, within=2 * LIMIT + MARGIN)[0] for sock in sockets]
    assert {status_of(answer) for answer in answers} == {408}
    server.wait_for_sockets(baseline, within=MARGIN)
    rss_after, peak_after = server.memory_kib()
    growth_mib = (peak_after - peak_before) / 1024
    assert growth_mib < 50 * 3  # at most a few copies of each body, never unbounded
    assert served < 2.0
    print(
        f"\n50 large stalled bodies: 408 each; /health meanwhile {served:.3f} s;"
        f" RSS {rss_before / 1024:.1f} -> peak {peak_after / 1024:.1f}"
        f" -> {rss_after / 1024:.1f} MiB"
    )
