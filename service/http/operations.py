"""The operator's endpoints: ``/metrics`` (Prometheus), ``/health/live`` and ``/health/ready``.

``/metrics`` answers the text format of every process (``service.metrics``); the gauges read
from the database (head position, refund backlog and its oldest refund's age, the webhook
backlog) are refreshed at each scrape, so they cost
nothing between scrapes. With ``metrics_token`` set it asks for that bearer token, compared in
constant time. ``/health/ready`` is what a load balancer asks before sending traffic: the
database answers a query within ``READY_TIMEOUT_SECONDS``, and every background job's runner is
alive (running its job, or waiting while another process holds the job's lease; the webhook
sender on PostgreSQL runs in every process).
"""

from __future__ import annotations

import asyncio
import hmac
import os

from aiohttp import web

from service.http.keys import CLOCK, CONFIG, JOBS, METRICS, READ_MODEL, STORE
from service.http.middleware import ApiError, json_response
from service.http.responses import error_body
from service.metrics.registry import CONTENT_TYPE, age_seconds

routes = web.RouteTableDef()

# How long the database may take to answer the readiness probe's query.
READY_TIMEOUT_SECONDS = 2.0


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    _check_metrics_token(request)
    app = request.app
    registry = app[METRICS]
    registry.head_position.set(await app[STORE].head_position())
    views = app[READ_MODEL]
    registry.refund_backlog.set(await views.refund_backlog())
    registry.refund_oldest_age.set(
        age_seconds(app[CLOCK](), await views.oldest_refund_requested_at())
    )
    await registry.refresh_webhooks()
    # The exposition reads every process's files in multiprocess mode: not on the event loop.
    body = await asyncio.to_thread(registry.exposition)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def _check_metrics_token(request: web.Request) -> None:
    token = request.app[CONFIG].metrics_token
    if not token:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "Auth Error", "AUTH_ERROR")


@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "pid": os.getpid()})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    reasons: dict[str, list[str]] = {}
    try:
        await asyncio.wait_for(request.app[STORE].head_position(), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        reasons["database"] = [f"no answer within {READY_TIMEOUT_SECONDS:g} s"]
    except Exception as error:  # whatever the backend raises: the database does not answer
        reasons["database"] = [f"{type(error).__name__}: {error}"[:300]]
    stopped = sorted(name for name, task in request.app[JOBS].items() if task.done())
    if stopped:
        reasons["jobs"] = [f"{name} is not running" for name in stopped]
    if reasons:
        return json_response(error_body("Not ready", "NOT_READY", reasons), status=503)
    jobs = request.app[JOBS]
    body = {"status": "ready", "pid": os.getpid(), "jobs": sorted(jobs)}
    return json_response(body)
