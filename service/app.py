"""The application factory: ``create_app(config)`` wires the store, gateway, workers and routes.

Resources are opened and closed in ``cleanup_ctx`` and shared through typed ``AppKey``s, so
several apps (tests) can live in one process without sharing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from eventstore import EventStore, open_store
from eventstore.backends import is_postgresql, is_url
from service.application import Context, InvoiceService, RegisterUser, UserExists
from service.config import Config
from service.gateway.port import Gateway
from service.gateway.qris import Merchant
from service.gateway.sandbox import SandboxGateway
from service.gateway.sandbox_memory import FolderMemory, sandbox_folder
from service.gateway.xendit import XenditGateway
from service.http import admin as admin_routes
from service.http import admin_webhooks as admin_webhook_routes
from service.http import openapi
from service.http import operations as operations_routes
from service.http import routes as api_routes
from service.http import sandbox as sandbox_routes
from service.http import webhooks as webhook_routes
from service.http.auth import Authenticator
from service.http.keys import (
    API_TIMES,
    AUTH,
    CLOCK,
    CONFIG,
    GATEWAY,
    HTTP_CLIENT,
    JOBS,
    LOADER,
    METRICS,
    READ_MODEL,
    REQUEST_IDS,
    SEND_TIMEOUTS,
    SERVICE,
    STORE,
    TEMPLATES,
    WEBHOOK_SECRETS,
    WEBHOOK_STATS,
    WEBHOOKS_ADMIN,
)
from service.http.loading import Loader
from service.http.middleware import errors_as_json, request_context
from service.http.rendering import page_templates
from service.http.request_ids import RequestIds
from service.jobs import lease_for, run_in_every_process, run_single_active
from service.limits import within_client_limits
from service.logging import protocol_logger
from service.metrics import Metrics
from service.metrics.outcomes import CommittedOutcomes
from service.presenters import remembered_api_time
from service.security import hash_password
from service.views import ReadModel
from service.views.backends import projectors_for, read_model_of
from service.webhooks.admin import WebhooksOverview
from service.webhooks.claims import claims_for
from service.webhooks.outbox import Outbox
from service.webhooks.sender import WebhookSender
from service.webhooks.signing import SecretBox
from service.webhooks.stats import WebhookStats, backlog
from service.workers.expiry import run_expiry_task
from service.workers.reconcile import run_reconcile_task
from service.workers.refunds import run_refund_worker

# The spec's development accounts: (username, role, platform); the password is the username.
DEV_ACCOUNTS = (
    ("usernew1", "buyer", None),
    ("seller1", "buyer", None),
    ("onmarket", "platform", "ONMARKET"),
    ("ondelivery", "platform", "ONDELIVERY"),
    ("onticket", "platform", "ONTICKET"),
    ("admin", "admin", None),
    # The seed's example sellers, so that its own checkout (corrected) works at once.
    ("testing123", "buyer", None),
    ("testing12345", "buyer", None),
)
_DEV_NAMESPACE = uuid.UUID("b7f3c1de-2f4a-4c7e-9d61-3a0f0c5e9e21")


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: Config,
    *,
    clock: Callable[[], datetime] = utc_now,
    gateway: Gateway | None = None,
) -> web.Application:
    """The service as an aiohttp application."""
    app = web.Application(
        middlewares=[request_context, errors_as_json, within_client_limits],
        client_max_size=config.max_body_bytes,
        handler_args={"logger": protocol_logger()},
    )
    app[CONFIG] = config
    app[CLOCK] = clock
    app[GATEWAY] = gateway or make_gateway(config)
    app[TEMPLATES] = page_templates()
    app[LOADER] = Loader()
    app[API_TIMES] = remembered_api_time()
    app[REQUEST_IDS] = RequestIds()
    app[SEND_TIMEOUTS] = weakref.WeakKeyDictionary()
    app[METRICS] = Metrics()
    app[WEBHOOK_SECRETS] = SecretBox(config.webhook_secret_key)
    # Every delivery attempt's outcome also moves /metrics' webhook_deliveries counter.
    app[WEBHOOK_STATS] = WebhookStats(app[METRICS].webhook_delivered)
    # Opened in this order and closed in the reverse one (aiohttp unwinds cleanup_ctx from the
    # end): the workers stop first, then what they use, the gateway and the HTTP client, and the
    # store last of all.
    app.cleanup_ctx.extend([_store, _http_client, _gateway, _service, _workers])
    app.add_routes(api_routes.routes)
    app.add_routes(operations_routes.routes)
    app.add_routes(admin_routes.routes)
    app.add_routes(admin_webhook_routes.routes)
    app.add_routes(webhook_routes.routes)
    if config.development and isinstance(app[GATEWAY], SandboxGateway):
        app.add_routes(sandbox_routes.routes)
    openapi.setup(app)  # last: it describes the routes mounted above
    return app


def make_gateway(config: Config) -> Gateway:
    """The gateway adapter the settings name."""
    if config.gateway == "xendit":
        return XenditGateway(
            config.xendit_secret_key,
            base_url=config.xendit_base_url,
            timeout=config.xendit_timeout_seconds,
            attempts=config.xendit_attempts,
        )
    merchant = Merchant(config.merchant_name, config.merchant_city, config.merchant_account_id)
    # Several workers on an SQLite file share what the sandbox took (a folder beside the file),
    # as they would share a real gateway; one process keeps it in memory, as before.
    memory = FolderMemory(sandbox_folder(config.database)) if config.workers > 1 else None
    return SandboxGateway(config.public_base_url, merchant, memory)


def store_options(config: Config) -> dict[str, Any]:
    """The settings of the store at ``config.database`` that are its backend's own; an SQLite
    file's folder is made here, since a first run starts with none."""
    if is_url(config.database):
        return {}
    Path(config.database).parent.mkdir(parents=True, exist_ok=True)
    return {"synchronous": config.synchronous}


def make_service(
    store: EventStore,
    gateway: Gateway,
    config: Config,
    clock: Callable[[], datetime] = utc_now,
    views: ReadModel | None = None,
    metrics: Metrics | None = None,
) -> InvoiceService:
    """The application over ``store``, reading its views through ``views`` (by default a new
    read model of the store's own backend)."""
    return InvoiceService(
        store,
        views if views is not None else read_model_of(store),
        gateway,
        clock=clock,
        invoice_ttl=timedelta(seconds=config.invoice_ttl_seconds),
        idempotency_ttl=timedelta(seconds=config.idempotency_ttl_seconds),
        conflict_timeout=timedelta(seconds=config.conflict_timeout_seconds),
        outcomes=CommittedOutcomes(metrics) if metrics is not None else None,
    )


async def _store(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await open_store(
        config.database,
        projectors=projectors_for(config.database),
        on_batch=app[METRICS].observe_batch,
        **store_options(config),
    )
    app[STORE] = store
    views = app[READ_MODEL] = read_model_of(store)
    _webhook_operations(app, views)
    try:
        yield
    finally:
        await store.close()


def _webhook_operations(app: web.Application, views: ReadModel) -> None:
    """The webhooks' backlog for /metrics (asked at each scrape) and their operator page
    panel, both from the read model."""
    clock = app[CLOCK]
    app[METRICS].webhook_stats = lambda: backlog(views, clock())
    app[WEBHOOKS_ADMIN] = WebhooksOverview(views, clock)


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        app[HTTP_CLIENT] = session
        yield


async def _gateway(app: web.Application) -> AsyncIterator[None]:
    """The gateway is made with the app; this closes it, once nothing can call it any more."""
    try:
        yield
    finally:
        await app[GATEWAY].close()


async def _service(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    service = make_service(
        app[STORE], app[GATEWAY], config, app[CLOCK], app[READ_MODEL], app[METRICS]
    )
    app[SERVICE] = service
    app[AUTH] = Authenticator(
        app[READ_MODEL],
        secret=config.token_secret,
        token_ttl=timedelta(seconds=config.token_ttl_seconds),
        clock=app[CLOCK],
    )
    if config.development:
        await ensure_dev_accounts(service)
    yield


Job = Callable[[], Coroutine[Any, Any, None]]


async def _workers(app: web.Application) -> AsyncIterator[None]:
    """The background jobs (``service.jobs``). Most run in one process at a time: with several
    processes on one store, the one holding a job's lease runs it. The webhook sender on
    PostgreSQL runs in every process, each sending the messages it claimed."""
    config, store, service, views = app[CONFIG], app[STORE], app[SERVICE], app[READ_MODEL]
    jobs: dict[str, Job] = {
        "refund-worker": lambda: run_refund_worker(
            store, service, delay=timedelta(seconds=config.refund_delay_seconds), clock=app[CLOCK]
        ),
        "expiry-task": lambda: run_expiry_task(
            views, service, interval=config.expiry_interval_seconds, clock=app[CLOCK]
        ),
    }
    jobs["webhook-outbox"] = lambda: Outbox(store, service, views, app[CLOCK]).run()
    everywhere: dict[str, Job] = {}
    sender_jobs = everywhere if is_postgresql(config.database) else jobs
    sender_jobs["webhook-sender"] = _webhook_sender(app)
    if config.reconcile_interval_seconds > 0:
        jobs["reconcile-task"] = lambda: run_reconcile_task(
            views,
            service,
            interval=config.reconcile_interval_seconds,
            window=timedelta(seconds=config.reconcile_window_seconds),
            clock=app[CLOCK],
        )
    leases = lease_for(config.database)
    app[JOBS] = {
        name: asyncio.create_task(run_single_active(leases, name, start), name=name)
        for name, start in jobs.items()
    }
    app[JOBS].update(
        (name, asyncio.create_task(run_in_every_process(name, start), name=name))
        for name, start in everywhere.items()
    )
    workers = list(app[JOBS].values())
    try:
        yield
    finally:
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await leases.close()


def _webhook_sender(app: web.Application) -> Job:
    """The sender, made anew (with its claims) whenever its job is (re)started."""
    config, store, service, views = app[CONFIG], app[STORE], app[SERVICE], app[READ_MODEL]

    def sender() -> WebhookSender:
        return WebhookSender(
            store,
            service,
            views,
            app[WEBHOOK_SECRETS],
            claims_for(store, views, timeout=config.webhook_timeout_seconds),
            schedule=config.webhook_schedule,
            timeout=config.webhook_timeout_seconds,
            concurrency=config.webhook_concurrency,
            poll_interval=config.webhook_poll_interval_seconds,
            disable_after=timedelta(seconds=config.webhook_disable_after_seconds),
            development=config.development,
            clock=app[CLOCK],
            stats=app[WEBHOOK_STATS],
        )

    return lambda: sender().run()


async def ensure_dev_accounts(service: InvoiceService) -> None:
    """Create the spec's development accounts that do not exist yet."""
    for username, role, platform in DEV_ACCOUNTS:
        if await service.user_exists(username):
            continue
        password_hash = await asyncio.to_thread(hash_password, username)
        with contextlib.suppress(UserExists):  # another process created it meanwhile
            event_id = str(uuid.uuid5(_DEV_NAMESPACE, username))
            await service.handle(
                RegisterUser(username, role, platform, password_hash, event_id),
                Context("system:dev-accounts"),
            )
