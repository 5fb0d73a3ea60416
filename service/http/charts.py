"""Small bar charts drawn on the server as inline SVG: no script, no CDN, no build step.

Every text in a chart is escaped here (a label may come from data); the result is ``Markup``,
which the autoescaped templates then leave as it is.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from markupsafe import Markup

WIDTH, HEIGHT = 520, 170
TOP, BOTTOM, SIDE = 18, 24, 18  # room for the values above and the labels below the bars


def bar_chart(bars: Sequence[tuple[str, int]], *, title: str, label_every: int = 1) -> Markup:
    """A vertical bar per (label, value), scaled to the largest; ``label_every`` labels only
    every n-th bar (24 hours do not fit 24 labels)."""
    width, height = WIDTH, HEIGHT
    plot = height - TOP - BOTTOM
    slot = (width - 2 * SIDE) / max(len(bars), 1)
    top = max((value for _, value in bars), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{html.escape(title)}</title>'
    ]
    for index, (label, value) in enumerate(bars):
        bar = round(plot * value / top, 1)
        x = round(SIDE + index * slot + slot * 0.15, 1)
        y = round(TOP + plot - bar, 1)
        middle = round(SIDE + index * slot + slot / 2, 1)
        text, shown = html.escape(label), html.escape(f"{value:,}".replace(",", "."))
        parts.append(
            f'<g class="bar" data-label="{text}" data-value="{value}">'
            f'<rect x="{x}" y="{y}" width="{round(slot * 0.7, 1)}" height="{bar}"/>'
            f"<title>{text}: {shown}</title>"
        )
        if value:
            parts.append(f'<text class="value" x="{middle}" y="{y - 4}">{shown}</text>')
        if index % label_every == 0:
            parts.append(f'<text class="label" x="{middle}" y="{height - 8}">{text}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))
