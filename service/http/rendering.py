"""The HTML pages' Jinja2 environment: templates from ``service/templates/``, autoescaped.

One environment per app (``keys.TEMPLATES``), made in ``create_app``: it compiles each template
on its first use and keeps it, which is state filled at run time, so it belongs to the app like
every other cache, not to this module. Templates ending in ``.html`` are autoescaped: a value
reaches a page as text unless it is ``Markup`` (a macro's output, or an SVG the service drew
itself). Escaping writes what ``html.escape`` writes (``&quot;``, ``&#x27;``), the pages' bytes
from before they had templates. Stylesheets and scripts are templates of their own, included
as they are.
"""

from __future__ import annotations

import html
from typing import Any

import jinja2
from markupsafe import Markup


def page_templates() -> jinja2.Environment:
    """A new environment over the service's templates."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("service", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        finalize=_escaped,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render, not the page
        auto_reload=False,  # the templates ship with the code: no file check per render
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["thousands"] = thousands
    return environment


@jinja2.pass_eval_context
def _escaped(context: jinja2.nodes.EvalContext, value: Any) -> Any:
    """Every value written into an autoescaped page, escaped by ``html.escape``."""
    if not context.autoescape or hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value), quote=True))


def thousands(amount: int) -> str:
    """``35300`` as ``35.300``: Indonesian rupiah group thousands with dots."""
    return f"{amount:,}".replace(",", ".")
