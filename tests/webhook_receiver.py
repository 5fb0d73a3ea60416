"""A real local webhook receiver for the tests: an aiohttp server that records each delivery
(headers and raw body) and answers as the test scripts it (a status, a ``Retry-After``, a
hang). Signatures are checked by the tests with the Standard Webhooks reference library."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web
from standardwebhooks import Webhook


@dataclass(frozen=True, slots=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value

    def verified_by(self, secret: str) -> dict[str, Any]:
        """The body, if ``secret`` verifies the delivery's signature (raises otherwise)."""
        value: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return value


@dataclass
class Receiver:
    """Answers ``status`` (200 by default) unless ``answer`` scripts each delivery."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: asyncio.Event | None = None  # when set: each request waits for it
    deliveries: list[Delivery] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    answer: Callable[[Delivery], int] | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(
            {k.lower(): v for k, v in request.headers.items()}, await request.read()
        )
        async with self.arrived:
            self.deliveries.append(delivery)
            self.arrived.notify_all()
        if self.hang is not None:
            await self.hang.wait()
        status = self.answer(delivery) if self.answer is not None else self.status
        return web.Response(status=status, text=f"answer {status}", headers=self.headers)

    async def wait_for(self, count: int, within: float = 5.0) -> list[Delivery]:
        """Until ``count`` deliveries have arrived (at most ``within`` seconds)."""
        async with asyncio.timeout(within):
            async with self.arrived:
                await self.arrived.wait_for(lambda: len(self.deliveries) >= count)
        return list(self.deliveries)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on a free port unless ``port`` is set); ``async with`` does it for you."""
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        if self._runner is not None:  # None: it never started
            await self._runner.cleanup()
