"""Every shared resource of the app, behind a typed ``web.AppKey``: no module-level state.

This module imports the types it names and nothing that imports it; the per-request keys are in
``request_keys`` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import aiohttp
from aiohttp import web

from eventstore import EventStore
from service.application import InvoiceService
from service.config import Config
from service.gateway.port import Gateway
from service.http.auth import Authenticator
from service.http.request_keys import REQUEST_ID, USERNAME

__all__ = [
    "AUTH",
    "CLOCK",
    "CONFIG",
    "GATEWAY",
    "HTTP_CLIENT",
    "REQUEST_ID",
    "SERVICE",
    "STORE",
    "USERNAME",
]

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", EventStore)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
SERVICE = web.AppKey("service", InvoiceService)
AUTH = web.AppKey("auth", Authenticator)
