"""The SSRF guard at send time: the sender's connections resolve names through
``GuardedResolver``, so in production a name that now resolves into the service's own network
is refused before any connection is made, and the address checked is the one connected to.

DNS is the one part played here: a resolver that answers as a rebinding attacker's name
server would (the test's name resolves to the loopback address a real receiver listens on).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from service.domain.webhook_endpoint import WebhookUrlRefused
from service.webhooks.ssrf import AddressRefused, GuardedResolver, check_before_send
from tests.webhook_receiver import Receiver

REBOUND = "rebound.example"


class RebindingDns(AbstractResolver):
    """Answers ``addresses`` for every name, and counts the lookups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses, self.lookups = addresses, 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


async def _post(resolver: GuardedResolver, url: str) -> int:
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=b"{}") as answer,
    ):
        return answer.status


async def test_production_refuses_a_name_that_now_resolves_to_loopback(
    receiver: Receiver,
) -> None:
    dns = RebindingDns("127.0.0.1")
    url = f"http://{REBOUND}:{receiver.port}/hook"

    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(GuardedResolver(development=False, inner=dns), url)

    assert isinstance(raised.value.os_error, AddressRefused)
    assert dns.lookups == 1
    assert receiver.deliveries == []  # refused before connecting


async def test_development_connects_to_what_the_name_resolves_to(receiver: Receiver) -> None:
    dns = RebindingDns("127.0.0.1")

    status = await _post(
        GuardedResolver(development=True, inner=dns), f"http://{REBOUND}:{receiver.port}/hook"
    )

    assert status == 200
    assert len(receiver.deliveries) == 1


@pytest.mark.parametrize(
    "addresses",
    [("10.0.0.1",), ("169.254.169.254",), ("::1",), ("93.184.216.34", "192.168.1.5")],
)
async def test_a_name_with_any_private_address_is_refused(addresses: tuple[str, ...]) -> None:
    resolver = GuardedResolver(development=False, inner=RebindingDns(*addresses))

    with pytest.raises(AddressRefused):
        await resolver.resolve(REBOUND, 443)


async def test_a_name_with_public_addresses_resolves_to_them() -> None:
    resolver = GuardedResolver(development=False, inner=RebindingDns("93.184.216.34"))

    found = await resolver.resolve(REBOUND, 443)

    assert [result["host"] for result in found] == ["93.184.216.34"]


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1/hook", "https://[::1]/hook", "https://10.0.0.1/x", "http://a.example/x"],
)
def test_an_address_written_in_the_url_is_checked_before_sending(url: str) -> None:
    with pytest.raises(WebhookUrlRefused):
        check_before_send(url, development=False)


def test_a_public_address_or_a_name_passes_the_check_before_sending() -> None:
    check_before_send("https://93.184.216.34/hook", development=False)
    check_before_send("https://hooks.example/x", development=False)  # checked as resolved
    check_before_send("http://127.0.0.1:9/hook", development=True)
