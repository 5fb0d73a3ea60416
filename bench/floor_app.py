"""The HTTP benchmark's floor: the least any checkout or detail costs on the service's stack.

``python -m bench.floor_app --port P --database FILE --token-secret S [--get-body FILE]`` serves
the parts of a checkout and a detail that the contract and the design card make unavoidable, and
nothing of the service's own domain:

- ``POST /floor/checkout``: the Bearer token read and its signature checked
  (``service.security``), the body loaded by the service's own ``CheckoutSchema`` (marshmallow),
  **one** event appended to a new stream of an ``EventStore`` at the given ``synchronous``
  (group commit, fsync'd before the answer), one INFO line logged as JSON, a small JSON answer.
  The service does more on top: the store reservations, the gateway's payment, the idempotency
  record, three to four events over four streams, the views in the same transaction.
- ``GET /floor/detail?invoice=…``: the token checked, the query loaded by the service's own
  ``DetailQuerySchema``, one row read by key from SQLite (the detail answer captured from the
  service, ``--get-body``), parsed and sent back as JSON, one INFO line logged.
- ``GET /health``: for the readiness check.

What this app reaches against the bare app (``bench/bare_app.py``) in the same run is the most
the service could reach with everything of its own made free: the benchmark prints it beside the
targets, so a missed target shows how much of the gap belongs to the stack itself.
"""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web
from marshmallow import ValidationError

from eventstore import NO_STREAM, NewEvent
from eventstore.sqlite import SQLiteEventStore
from service.http.keys import LOADER
from service.http.loading import Loader
from service.http.routes import load
from service.http.schemas import CheckoutSchema, DetailQuerySchema
from service.logging import configure_logging
from service.security import CredentialsError, TokenError, parse_bearer, read_token

STORE = web.AppKey("store", SQLiteEventStore)
SECRET = web.AppKey("secret", bytes)
DETAIL_STREAM = "floor-detail"
JSON = "application/json"
log = structlog.get_logger("bench.floor")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _username(request: web.Request) -> str:
    try:
        token = parse_bearer(request.headers.get("Authorization"))
        return read_token(token, request.app[SECRET], datetime.now(UTC)).username
    except (CredentialsError, TokenError):
        raise web.HTTPUnauthorized() from None


def _refused(error: ValidationError) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_dumps({"errors": error.messages}), content_type=JSON)


async def checkout(request: web.Request) -> web.Response:
    username = _username(request)
    try:
        body = orjson.loads(await request.read())
        loaded = load(CheckoutSchema, body, request)
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest() from None
    except ValidationError as error:
        raise _refused(error) from None
    invoice = "FX" + secrets.token_hex(8).upper()
    event = NewEvent("CheckoutAccepted", body, {"actor": username})
    await request.app[STORE].append(f"floor-{invoice}", [event], NO_STREAM)
    log.info("checkout accepted", invoice=invoice, total_amount=loaded["total_amount"])
    return web.json_response({"invoice": invoice, "status": "PENDING"}, dumps=_dumps)


async def detail(request: web.Request) -> web.Response:
    _username(request)
    try:
        load(DetailQuerySchema, dict(request.query), request)
    except ValidationError as error:
        raise _refused(error) from None
    ((data,),) = await request.app[STORE].lookup(
        "SELECT data FROM events WHERE stream_id = ? AND version = 1", (DETAIL_STREAM,)
    )
    log.info("detail read", invoice=request.query.get("invoice"))
    return web.json_response(orjson.loads(data), dumps=_dumps)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=_dumps)


def create_app(database: Path, secret: str, synchronous: str, get_body: Any) -> web.Application:
    app = web.Application()
    app[SECRET] = secret.encode()
    app[LOADER] = Loader()  # the service's schema instances, one per app as there

    async def open_store(app: web.Application) -> Any:
        store = await SQLiteEventStore.open(database, synchronous=synchronous)
        await store.append(DETAIL_STREAM, [NewEvent("DetailCaptured", get_body, {})], NO_STREAM)
        app[STORE] = store
        yield
        await store.close()

    app.cleanup_ctx.append(open_store)
    app.router.add_post("/floor/checkout", checkout)
    app.router.add_get("/floor/detail", detail)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", type=Path, required=True, help="a new SQLite file")
    parser.add_argument("--token-secret", required=True, help="the service's token secret")
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL", "EXTRA"])
    parser.add_argument("--get-body", type=Path, help="the JSON object GET /floor/detail answers")
    args = parser.parse_args()
    body = orjson.loads(args.get_body.read_bytes()) if args.get_body else {"message": "none"}
    configure_logging("INFO", "json")
    app = create_app(args.database, args.token_secret, args.synchronous, body)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
