"""``POST /admin/webhooks/{delivery_id}/resend``: the operator page's Resend button.

A form post from a browser that remembers the admin's Basic credentials, so it must come from
the page itself: a request the browser marks as from another site (``Sec-Fetch-Site``, or an
``Origin`` of another host) is refused before anything happens (cross-site request forgery). The
page sends no ``Referer`` and, by its ``no-referrer`` policy, an ``Origin`` of ``null`` on its own
posts: ``Sec-Fetch-Site: same-origin`` is what vouches for it then. Clients that are not
browsers send neither header and are not at risk. The resend goes through the same command as
the API's (``ResendWebhookMessages``), as the admin; then the browser is sent back to the page,
which says what was resent.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from service.application.webhooks import ResendWebhookMessages
from service.domain.webhook_delivery import WebhookMessageNotFound
from service.http.admin import PATH as ADMIN_PATH
from service.http.admin import admin_or_prompt
from service.http.keys import SERVICE
from service.http.responses import ApiError
from service.http.routes import context
from service.http.schemas.webhooks import MESSAGE_ID_PATTERN

routes = web.RouteTableDef()

RESEND_PATH = ADMIN_PATH + "/webhooks/{delivery_id}/resend"


def cross_site() -> ApiError:
    return ApiError(403, "Cross-site request refused", "CROSS_SITE_REQUEST")


def check_same_site(request: web.Request) -> None:
    """Refuse a post a browser made from another site (see the module's docstring)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site != "same-origin":
            raise cross_site()
        return
    origin = request.headers.get("Origin")
    if origin is not None and _host_of(origin) != request.host:
        raise cross_site()  # "null" too: an opaque origin, from a browser that cannot vouch


def _host_of(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc
    except ValueError:  # "http://[::1": not an origin at all
        return None


@routes.post(RESEND_PATH)
async def resend(request: web.Request) -> web.StreamResponse:
    actor = await admin_or_prompt(request)
    if isinstance(actor, web.Response):
        return actor
    check_same_site(request)
    delivery = request.match_info["delivery_id"]
    if MESSAGE_ID_PATTERN.fullmatch(delivery) is None:
        raise WebhookMessageNotFound()
    command = ResendWebhookMessages((delivery,), None, actor.username)  # an admin's: any service
    await request.app[SERVICE].handle(command, context(request, actor.username))
    return back_to_the_page(f"{ADMIN_PATH}?{urlencode({'resent': delivery})}")


def back_to_the_page(location: str) -> web.Response:
    """303 See Other: the browser loads the page again (a reload does not post twice); the body
    is the documented HTML, a link there."""
    link = f'<!doctype html><title>Resent</title><a href="{escape(location)}">Operator page</a>'
    return web.Response(
        status=303, headers={"Location": location}, text=link, content_type="text/html"
    )
