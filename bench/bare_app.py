"""The HTTP benchmark's baseline: a bare aiohttp app doing only the transport work.

``python -m bench.bare_app --port P [--get-body FILE]`` serves, on the same aiohttp and orjson as
the service and with nothing else (no database, no validation, no logging, no middleware):

- ``POST /echo``: parses the JSON body (a checkout's, as the load generator sends it) and
  answers it back;
- ``GET /detail``: answers a fixed JSON object, serialised per request: the service's own
  ``/invoice/detail`` answer captured at the start of the benchmark (``--get-body``), so both
  send the same bytes;
- ``GET /health``: for the readiness check.

It is what the service's checkout and detail are measured against: the service's cost above
this is its own work (auth, validation, the event store, the views, logging).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

DEFAULT_GET_BODY: dict[str, Any] = {"message": "no --get-body given"}
BODY = web.AppKey("body", dict)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def echo(request: web.Request) -> web.Response:
    return web.json_response(orjson.loads(await request.read()), dumps=_dumps)


async def detail(request: web.Request) -> web.Response:
    return web.json_response(request.app[BODY], dumps=_dumps)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=_dumps)


def create_app(get_body: dict[str, Any]) -> web.Application:
    app = web.Application()
    app[BODY] = get_body
    app.router.add_post("/echo", echo)
    app.router.add_get("/detail", detail)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--get-body", type=Path, help="a JSON object for GET /detail to answer")
    args = parser.parse_args()
    body = orjson.loads(args.get_body.read_bytes()) if args.get_body else DEFAULT_GET_BODY
    web.run_app(create_app(body), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
