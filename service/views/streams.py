"""The names of the invoice streams in the log, shared by the command side and every view.

Backend-neutral: a stream id is the store's key whatever the backend, so the command handlers
that append to an invoice's stream and the views that fold it agree on its name here.
"""

from __future__ import annotations

INVOICE_STREAM_PREFIX = "invoice-"


def invoice_stream(invoice: str) -> str:
    return f"{INVOICE_STREAM_PREFIX}{invoice}"
