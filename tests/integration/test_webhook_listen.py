"""``python -m service webhooks listen``: a real process verifies a delivery's signature and
prints it, and refuses a forged one; and, end to end, a real ``python -m service serve``
delivers a checkout's ``invoice.created`` to it."""

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
from tests.e2e.conftest import checkout_body
from tests.multiprocess.served import Service, start


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


async def test_listen_prints_a_real_services_verified_delivery(tmp_path: Path) -> None:
    """``serve`` (development, a fresh SQLite file) and ``listen`` as real processes: the
    endpoint's secret comes from the service on creation, so listen starts after it."""
    server, database = start(tmp_path, 1)
    service = Service(server, database)
    port = _free_port()
    try:
        status, endpoint = await service.request(
            "POST",
            "/webhooks/endpoints",
            {"url": f"http://127.0.0.1:{port}/hook", "event_types": ["invoice.created"]},
            service.basic("onmarket"),
        )
        assert status == 201, endpoint
        with (tmp_path / "out.txt").open("w") as out:
            listen = _listen(port, endpoint["secret"], out)
            try:
                await _wait_listening(port)
                status, created = await service.checkout("usernew1", checkout_body(stores=1))
                assert status == 200, created

                async def delivered() -> bool:
                    return "[verified]" in (tmp_path / "out.txt").read_text()

                await _until(delivered, 10)
            finally:
                listen.terminate()
                listen.wait(10)
    finally:
        server.stop()
        await service.close()
    printed = (tmp_path / "out.txt").read_text()
    assert '"type": "invoice.created"' in printed, printed
    assert f'"invoice": "{created["invoice"]}"' in printed, printed
    assert "bad signature" not in printed


async def _until(condition: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


def _listen(port: int, secret: str, out: Any) -> subprocess.Popen[bytes]:
    command = (sys.executable, "-m", "service", "webhooks", "listen")
    return subprocess.Popen(
        [*command, "--port", str(port), "--secret", secret],
        stdout=out,
        stderr=subprocess.STDOUT,
    )


async def _receive_two(tmp_path: Path, secret: str, port: int, out: Any) -> None:
    process = _listen(port, secret, out)
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
