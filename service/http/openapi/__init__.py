"""The API's OpenAPI 3.1 description, generated from the marshmallow schemas, and its two pages.

``GET /openapi.json`` is the document; ``GET /docs`` is the same document as a readable HTML page
rendered on the server by ``docs_page`` (no script, no CDN, one inline stylesheet allowed by its
hash in a strict Content-Security-Policy). Both need no credentials.

What each endpoint takes comes from the request schemas in ``schemas`` (their validators are
the constraints, so a rule is written once); what it answers comes from the answer schemas that
its handler passes to ``answer()``. ``operations.OPERATIONS`` adds what no schema says: summary,
credentials, query and header parameters, and every status the endpoint can answer with the
error codes behind it; ``document.build_document`` puts them together.

Only mounted routes are described, and the development-only ``/sandbox/*`` routes never are:
they stand in for the payment gateway's own pages, are absent in production, and are described
in docs/api.md. The document is built once per app, on its first request, and kept by the app's
``ApiDocument``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from service.http.docs_page import render_page, style_source
from service.http.keys import TEMPLATES
from service.http.openapi.codes import ERROR_MESSAGES
from service.http.openapi.common import Operation
from service.http.openapi.document import build_document, routes_to_document
from service.http.openapi.operations import OPERATIONS

__all__ = [
    "ERROR_MESSAGES",
    "OPERATIONS",
    "ApiDocument",
    "Operation",
    "build_document",
    "routes_to_document",
    "setup",
]


class ApiDocument:
    """The document of one app and its HTML page, made on first use and kept."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._json: bytes | None = None
        self._page: tuple[str, str] | None = None

    def document(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.json())
        return result

    def json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(build_document(self._app))
        return self._json

    def page(self) -> tuple[str, str]:
        """The HTML page and the Content-Security-Policy that lets its stylesheet in."""
        if self._page is None:
            page = render_page(self._app[TEMPLATES], self.document())
            csp = (
                f"default-src 'none'; style-src '{style_source(page)}'; img-src data:;"
                " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            )
            self._page = (page, csp)
        return self._page

    async def serve_json(self, request: web.Request) -> web.Response:
        return web.Response(body=self.json(), content_type="application/json")

    async def serve_page(self, request: web.Request) -> web.Response:
        page, csp = self.page()
        response = web.Response(text=page, content_type="text/html", charset="utf-8")
        response.headers.update(
            {
                "Content-Security-Policy": csp,
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            }
        )
        return response


def setup(app: web.Application) -> None:
    """Mount ``/openapi.json`` and ``/docs``; call it after every other route is added."""
    document = ApiDocument(app)
    app.router.add_get("/openapi.json", document.serve_json)
    app.router.add_get("/docs", document.serve_page)
