"""The API's answers, rendered from domain state with the seeds' exact field names.

Kept apart from both the HTTP layer and the command handlers: a checkout's answer is stored with
its idempotency key (so a retry returns it unchanged), and the detail answer is rendered the same
way for the live view and for a replay "as of" a past moment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventstore import RecordedEvent
from service.domain.events import InvoiceCreated
from service.domain.invoice import Invoice

TimeFormat = Callable[[datetime], str]
REMEMBERED_TIMES = 4096


def api_time(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and Z, as the seeds write it: 2024-01-31T12:05:44.155Z."""
    # isoformat truncates to milliseconds, as ``microsecond // 1000`` would, at a fraction of
    # strftime's cost (three of these in every detail answer).
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def remembered_api_time(size: int = REMEMBERED_TIMES) -> TimeFormat:
    """``api_time`` remembering the last ``size`` moments it formatted: one per app
    (``keys.API_TIMES``). An invoice read again shows the same three times, and formatting
    them was 3 % of a detail; a moment's text depends on nothing else."""
    return functools.lru_cache(maxsize=size)(api_time)


def checkout_answer(created: InvoiceCreated, status: str) -> dict[str, Any]:
    """What POST /payment-checkout answers for each source."""
    if created.source == "QRIS":
        return {
            "invoice": created.invoice,
            "xendit_invoice": created.gateway_reference,
            "qr_string": created.qr_string,
            "amount": created.total_amount,
            "expired_at": api_time(created.expired_at),
        }
    answer: dict[str, Any] = {
        "invoice": created.invoice,
        "xendit_invoice": created.gateway_reference,
        "expired_at": api_time(created.expired_at),
        "transaction": [
            {"invoice_onmarket": line.invoice_onmarket, "status": status}
            for line in created.transactions
        ],
    }
    if created.source == "XENDIT":
        answer = {"payment_url": created.payment_url, **answer}
    else:  # BALANCE: paid at once, there is nothing to pay at a gateway
        answer = {**answer, "amount": created.total_amount, "status": status}
    return answer


def invoice_detail(
    seq: int,
    state: Invoice,
    status_history: list[dict[str, Any]],
    now: datetime,
    times: TimeFormat = api_time,
) -> dict[str, Any]:
    """What GET /invoice/detail answers: the seed's fields plus each store's transaction and
    the status history as shown at ``now`` (``times``: the app's ``API_TIMES`` on the read
    path, which remembers)."""
    created = state.created
    return {
        "id": str(seq),
        "username": created.username,
        "type": f"{created.service} CHECKOUT",
        "amount": created.total_amount,
        "xendit_invoice": created.gateway_reference,
        "invoice": created.invoice,
        "status": state.status_at(now),
        "src": created.source,
        "xendit_url": created.payment_url,
        "qr_string": created.qr_string,
        "expired_at": times(created.expired_at),
        "createdAt": times(created.created_at),
        "updatedAt": times(state.updated_at),
        "transaction": [
            {
                "invoice_onmarket": t.line.invoice_onmarket,
                "seller_username": t.line.seller_username,
                "amount": t.line.amount,
                "freight_charge": t.line.freight_charge,
                "insurance_amount": t.line.insurance_amount,
                "commission_onmarket": t.line.commission_onmarket,
                "waybill_number": t.line.waybill_number,
                "status": state.transaction_status_at(t, now),
            }
            for t in state.transactions
        ],
        "status_history": status_history,
    }


def history_entry(event: RecordedEvent) -> dict[str, Any]:
    """One event of an invoice's history: what, when, by whom, in which request."""
    return {
        "position": event.position,
        "version": event.version,
        "type": event.type,
        "data": event.data,
        "recorded_at": api_time(event.recorded_at),
        "actor": event.metadata.get("actor"),
        "request_id": event.metadata.get("request_id"),
    }
