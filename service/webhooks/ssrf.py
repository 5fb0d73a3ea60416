"""The SSRF guard: which URLs the service may send webhooks to.

In production only https, and no host that resolves to a loopback, private, link-local,
multicast, unspecified or reserved address: a platform must not make the service call into
its own network. Checked when an endpoint is registered or changed, and again before every
delivery, since what a name resolves to can change (DNS rebinding). Development mode allows
http and local addresses, so ``python -m service webhooks listen`` on 127.0.0.1 works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from service.domain.webhook_endpoint import WebhookUrlRefused

MAX_URL = 2048


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
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or any(_forbidden(address) for address in addresses):
        raise _refused(
            "The URL's host resolves to a loopback, private, link-local, multicast or reserved"
            " address."
        )
