"""The SSRF guard: which URLs the service may send webhooks to.

In production only https, and no host that resolves to a loopback, private, link-local,
multicast, unspecified or reserved address: a platform must not make the service call into
its own network. Checked when an endpoint is registered or changed (``check_url``), and again
at every delivery, since what a name resolves to can change (DNS rebinding): the sender's
connections resolve names through ``GuardedResolver``, so the addresses checked are the very
ones connected to (a second lookup after the check could answer otherwise), and
``check_before_send`` checks the form and an address written in the URL itself, which aiohttp
connects to without resolving. Development mode allows http and local addresses, so
``python -m service webhooks listen`` on 127.0.0.1 works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from service.domain.webhook_endpoint import WebhookUrlRefused

MAX_URL = 2048
PRIVATE = (
    "The URL's host resolves to a loopback, private, link-local, multicast or reserved address."
)


class AddressRefused(OSError):
    """A name resolved to an address the service must not connect to (raised by
    ``GuardedResolver``; aiohttp hands it on as the ``os_error`` of its connector error)."""


def _refused(detail: str) -> WebhookUrlRefused:
    return WebhookUrlRefused(detail, {"url": [detail]})


def check_shape(url: str, *, development: bool) -> str:
    """The URL's host, if the URL is one the service may send to by its form alone."""
    parts = urlsplit(url)
    schemes = ("http", "https") if development else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(schemes)
        raise _refused(f"The URL must be an absolute {allowed} URL.")
    if parts.username is not None or parts.password is not None:
        raise _refused("The URL must not carry credentials.")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as error:
        raise _refused("The URL's port is not valid.") from error
    return parts.hostname


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


async def check_url(url: str, *, development: bool) -> None:
    """Refuse (``WebhookUrlRefused``) a URL the service must not send to; in production this
    resolves the host, and every address it resolves to must be public."""
    host = check_shape(url, development=development)
    if development:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise _refused("The URL's host does not resolve.") from error
    if not _all_public(str(info[4][0]) for info in infos):
        raise _refused(PRIVATE)


def check_before_send(url: str, *, development: bool) -> None:
    """Refuse a URL the sender must not post to: its form, and in production an address written
    in it (a name's addresses are checked as it is resolved, by ``GuardedResolver``)."""
    host = check_shape(url, development=development)
    if development:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return  # a name
    if not _all_public([host]):
        raise _refused(PRIVATE)


def _all_public(addresses: Iterable[str]) -> bool:
    found = set(addresses)
    return bool(found) and not any(_forbidden(address) for address in found)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for the sender's connections: in production a name that resolves to
    any address that is not public is refused (``AddressRefused``) before a connection is
    made, so a name that resolved to a public address when the endpoint was registered cannot
    lead the service into its own network later."""

    def __init__(self, *, development: bool, inner: AbstractResolver | None = None) -> None:
        self.development = development
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self.development and not _all_public(result["host"] for result in found):
            raise AddressRefused(PRIVATE)
        return found

    async def close(self) -> None:
        await self._inner.close()
