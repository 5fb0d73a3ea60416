"""Every shared resource of the app, behind a typed ``web.AppKey``: no module-level state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from eventstore import EventStore
from service.config import Config
from service.gateway.port import Gateway
from service.views import ReadModel

if TYPE_CHECKING:  # imported for the annotations only: both modules import this one
    from service.application import InvoiceService
    from service.http.auth import Authenticator

CONFIG = web.AppKey("config", Config)
STORE: web.AppKey[EventStore] = web.AppKey("store")
READ_MODEL: web.AppKey[ReadModel] = web.AppKey("read_model")
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
SERVICE: web.AppKey[InvoiceService] = web.AppKey("service")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")

# Per request.
REQUEST_ID = web.RequestKey("request_id", str)
USERNAME = web.RequestKey("username", str)
