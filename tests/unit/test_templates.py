"""The HTML pages' templates escape every value they show; only the service's own markup passes.

Rendered from plain values (no app, no database): a checkout page and a docs page whose every
text holds markup, which must come out as text.
"""

from __future__ import annotations

import hashlib
import re
from base64 import b64encode
from typing import Any

import jinja2
import pytest
from markupsafe import Markup

from service.http.docs_page import docs_view, style_source
from service.http.rendering import page_templates, thousands
from service.http.sandbox_page import (
    LOOKS,
    Actions,
    CheckoutPage,
    Countdown,
    Line,
    QrCode,
    qr_svg,
)

HOSTILE = "<script>alert('x')</script>&\""
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;"


def checkout_page(**changes: Any) -> CheckoutPage:
    values: dict[str, Any] = {
        "nonce": "n0nce",
        "invoice": HOSTILE,
        "status": "PENDING",
        "look": LOOKS["PENDING"],
        "total": 40200,
        "method": HOSTILE,
        "buyer": HOSTILE,
        "reference": HOSTILE,
        "expires_at": "2026-03-01T10:00:00.000Z",
        "expires_shown": "2026-03-01 10:00:00 UTC",
        "countdown": Countdown(7200, "2:00:00 left"),
        "qr": None,
        "lines": (Line(HOSTILE, HOSTILE, 10000, 5000, 100, 15100, HOSTILE),),
        "actions": Actions("ref%2F1", HOSTILE, "/sandbox/checkout/ref%2F1"),
    }
    return CheckoutPage(**{**values, **changes})


def render_checkout(page: CheckoutPage) -> str:
    return page_templates().get_template("sandbox_checkout.html").render(page=page)


def test_every_value_on_the_checkout_page_is_escaped() -> None:
    html = render_checkout(checkout_page())

    assert "<script>alert" not in html
    assert len(re.findall("<script", html)) == 1  # the page's own
    # title, h1, method, buyer, reference, the line's number, seller and status, payment id
    assert html.count(ESCAPED) == 9
    assert 'value="&lt;script&gt;' in html  # in an attribute too


def test_amounts_are_shown_in_rupiah_with_their_exact_value() -> None:
    html = render_checkout(checkout_page())

    assert '<dd class="total" id="total"><data value="40200">Rp&nbsp;40.200</data></dd>' in html
    assert thousands(1234567) == "1.234.567"
    assert thousands(0) == "0"


def test_the_qr_code_is_the_only_markup_handed_to_the_page() -> None:
    svg = qr_svg("00020101021126")
    html = render_checkout(checkout_page(qr=QrCode(Markup(svg), HOSTILE)))

    assert svg in html
    assert f'<code class="payload">{ESCAPED}</code>' in html


def test_a_page_that_is_not_pending_has_no_buttons_and_no_countdown() -> None:
    html = render_checkout(
        checkout_page(status="PAID", look=LOOKS["PAID"], countdown=None, actions=None)
    )

    assert "<form" not in html
    assert 'id="countdown"' not in html
    assert '<time datetime="2026-03-01T10:00:00.000Z" id="expires-at">' in html


def test_a_misspelt_name_fails_the_render_rather_than_showing_nothing() -> None:
    template = page_templates().from_string("{{ page.no_such_field }}")

    with pytest.raises(jinja2.UndefinedError):
        template.render(page={})


def document(text: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {text: {"type": "string", "description": text}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": text, "version": "1", "description": f"{text}\n\n- `{text}`"},
        "tags": [{"name": "things", "description": text}],
        "paths": {
            "/things": {
                "get": {
                    "tags": ["things"],
                    "summary": text,
                    "description": text,
                    "parameters": [
                        {"name": text, "in": "query", "schema": {"enum": [text]}},
                    ],
                    "responses": {
                        "200": {
                            "description": text,
                            "content": {"application/json": {"schema": {"$ref": "#/x/Thing"}}},
                        }
                    },
                }
            }
        },
        "components": {"schemas": {"Thing": schema}},
    }


def render_docs(doc: dict[str, Any]) -> str:
    return page_templates().get_template("docs.html").render(page=docs_view(doc))


def test_every_text_of_the_docs_page_is_escaped() -> None:
    html = render_docs(document(HOSTILE))

    assert "<script" not in html
    assert f"<code>{ESCAPED}</code>" in html  # a `code` span of the Markdown
    assert html.count(ESCAPED) >= 10


def test_the_docs_page_links_its_schemas_and_keeps_its_markdown() -> None:
    html = render_docs(document("plain `code` text"))

    assert '<a href="#schema-Thing">Thing</a>' in html
    assert "<p>plain <code>code</code> text</p>" in html
    assert "<ul><li><code>plain </code>code<code> text</code></li></ul>" in html
    assert '<a href="#op-get-things"><span class="m m-get">GET</span> /things</a>' in html


def test_the_style_source_is_the_hash_of_the_stylesheet_as_rendered() -> None:
    html = render_docs(document("x"))
    (style,) = re.findall(r"<style>(.*?)</style>", html, flags=re.DOTALL)

    digest = b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert style_source(html) == f"sha256-{digest}"
    assert ":root{" in style
