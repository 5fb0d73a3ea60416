"""Every shared resource of the app, behind a typed ``web.AppKey``: no module-level state.

The caches and counters the request path keeps for speed live here too, one per app: the
schema instances and loaded queries (``LOADER``), the formatted times (``API_TIMES``), the
request id counter (``REQUEST_IDS``) and the connections whose socket has its send timeout
(``SEND_TIMEOUTS``). This module imports the types it names and nothing that imports it; the
per-request keys are in ``request_keys`` (re-exported here).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from datetime import datetime

import aiohttp
import jinja2
from aiohttp import web

from eventstore import EventStore
from service.application import InvoiceService
from service.config import Config
from service.gateway.port import Gateway
from service.http.admin_page import WebhooksAdmin
from service.http.auth import Authenticator
from service.http.loading import Loader
from service.http.request_ids import RequestIds
from service.http.request_keys import REQUEST_ID, USERNAME
from service.metrics import Metrics
from service.views import ReadModel
from service.webhooks.signing import SecretBox
from service.webhooks.stats import WebhookStats

__all__ = [
    "API_TIMES",
    "AUTH",
    "CLOCK",
    "CONFIG",
    "GATEWAY",
    "HTTP_CLIENT",
    "JOBS",
    "LOADER",
    "METRICS",
    "REQUEST_ID",
    "REQUEST_IDS",
    "SEND_TIMEOUTS",
    "SERVICE",
    "STORE",
    "TEMPLATES",
    "USERNAME",
    "WEBHOOKS_ADMIN",
    "WEBHOOK_SECRETS",
    "WEBHOOK_STATS",
]

CONFIG = web.AppKey("config", Config)
STORE: web.AppKey[EventStore] = web.AppKey("store")
READ_MODEL: web.AppKey[ReadModel] = web.AppKey("read_model")
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
SERVICE = web.AppKey("service", InvoiceService)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
# Set by the webhooks feature, when present: its panel of the operator page (admin_page).
WEBHOOKS_ADMIN: web.AppKey[WebhooksAdmin] = web.AppKey("webhooks_admin")
# The background jobs' tasks (``run_single_active``), by name: alive while running or waiting
# for a lease another process holds; one that ended makes the process not ready.
JOBS: web.AppKey[dict[str, asyncio.Task[None]]] = web.AppKey("jobs")
# Seals webhook secrets for the log and opens them for signing (``webhook_secret_key``).
WEBHOOK_SECRETS = web.AppKey("webhook_secrets", SecretBox)
WEBHOOK_STATS = web.AppKey("webhook_stats", WebhookStats)

# The HTML pages' templates (service/templates/), loaded and compiled once per app.
TEMPLATES = web.AppKey("templates", jinja2.Environment)

# Kept for speed; each answers only what it was given the same input for.
LOADER = web.AppKey("loader", Loader)
API_TIMES: web.AppKey[Callable[[datetime], str]] = web.AppKey("api_times")
REQUEST_IDS = web.AppKey("request_ids", RequestIds)
# The connections whose socket has its TCP_USER_TIMEOUT already, with the value (limits.py).
SEND_TIMEOUTS: web.AppKey[weakref.WeakKeyDictionary[asyncio.BaseTransport, int]] = web.AppKey(
    "send_timeouts"
)
