"""``python -m service webhooks listen``: a local webhook receiver for development, as
``stripe listen`` is for Stripe. It verifies each delivery's Standard Webhooks signature with
the secret given (``--secret``, or ``INVOICE_WEBHOOK_LISTEN_SECRET``) and prints it; register
its URL as an endpoint of the service in development mode to watch a checkout's events
arrive."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

import orjson
from aiohttp import web

from service.config import Config
from service.webhooks.signing import verify

# The Standard Webhooks tolerance: a delivery signed longer ago than this is refused.
TOLERANCE_SECONDS = 5 * 60


def listen(config: Config, args: argparse.Namespace) -> int:
    """Receive and print deliveries until interrupted."""
    secret = args.secret or os.environ.get("INVOICE_WEBHOOK_LISTEN_SECRET")
    app = receiver_app(secret, sys.stdout)
    print(
        f"listening on http://{args.host}:{args.port}/ (register it with POST"
        " /webhooks/endpoints);"
        + (" verifying signatures" if secret else " NOT verifying: give --secret whsec_…"),
        flush=True,
    )
    web.run_app(app, host=args.host, port=args.port, print=None, handle_signals=True)
    return 0


def receiver_app(secret: str | None, out: TextIO) -> web.Application:
    """The receiver: 204 for a delivery it accepts, 400 for one whose signature fails."""
    app = web.Application()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        message_id = headers.get("webhook-id", "")
        verdict = "unsigned"
        if secret is not None:
            verdict = _check(
                secret,
                message_id,
                headers.get("webhook-timestamp", ""),
                body,
                headers.get("webhook-signature", ""),
            )
        try:
            shown = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            shown = body.decode("utf-8", "replace")
        print(f"--> {message_id} [{verdict}]\n{shown}", file=out, flush=True)
        if verdict not in ("verified", "unsigned"):
            return web.Response(status=400, text=verdict)
        return web.Response(status=204)

    app.router.add_post("/{tail:.*}", receive)
    return app


def _check(secret: str, message_id: str, timestamp: str, body: bytes, signature: str) -> str:
    if not (message_id and timestamp.isdigit() and signature):
        return "missing webhook headers"
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return "timestamp too old or too new"
    if not verify(secret, message_id, int(timestamp), body, signature):
        return "bad signature"
    return "verified"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = commands.add_parser("webhooks", help="webhook tools for development")
    actions = webhooks.add_subparsers(required=True, metavar="ACTION")
    listening = actions.add_parser(
        "listen", help="a local receiver that verifies and prints each delivery"
    )
    listening.add_argument("--host", default="127.0.0.1")
    listening.add_argument("--port", type=int, default=8099)
    listening.add_argument("--secret", help="the endpoint's whsec_… secret, to verify")
    listening.set_defaults(command=listen)


__all__ = ["add_commands", "listen", "receiver_app"]
