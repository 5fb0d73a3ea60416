"""``python -m service webhooks listen``: a real process receives a real delivery from the
service (development mode), verifies its signature and prints it; a forged one is refused."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from service.webhooks.signing import new_secret, signatures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_listening(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert time.monotonic() < deadline, "listen did not start"
            await asyncio.sleep(0.05)


async def test_listen_verifies_and_prints_a_delivery_and_refuses_a_forged_one(
    tmp_path: Path,
) -> None:
    secret, port = new_secret(), _free_port()
    with (tmp_path / "out.txt").open("w") as out:
        await _receive_two(tmp_path, secret, port, out)
    printed = (tmp_path / "out.txt").read_text()
    assert "--> msg_good [verified]" in printed
    assert '"type": "invoice.paid"' in printed
    assert "--> msg_forged [bad signature]" in printed


async def _receive_two(tmp_path: Path, secret: str, port: int, out: Any) -> None:
    process = subprocess.Popen(  # noqa: ASYNC220 - a process of its own, waited for below
        [
            sys.executable,
            "-m",
            "service",
            "webhooks",
            "listen",
            "--port",
            str(port),
            "--secret",
            secret,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        await _wait_listening(port)
        body = b'{"type":"invoice.paid","timestamp":"2026-03-01T08:00:00.000Z","data":{}}'
        now = int(time.time())
        good = {
            "webhook-id": "msg_good",
            "webhook-timestamp": str(now),
            "webhook-signature": signatures([secret], "msg_good", now, body),
            "Content-Type": "application/json",
        }
        forged = {**good, "webhook-id": "msg_forged"}
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/hook"
            async with session.post(url, data=body, headers=good) as answer:
                assert answer.status == 204
            async with session.post(url, data=body, headers=forged) as answer:
                assert answer.status == 400
    finally:
        process.terminate()
        process.wait(10)
