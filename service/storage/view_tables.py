"""The view tables every backend keeps, and the columns that order their rows: what the
views-equal-a-replay checks compare, row by row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

VIEW_TABLES: Final = {
    "invoice_view": "seq",
    "invoice_waybills": "waybill_number, seq",
    "ledger_entries": "position, line",
    "account_balances": "account",
    "users": "username",
    "webhook_endpoints": "endpoint",
    "webhook_messages": "message",
    "webhook_attempts": "message, attempt",
}


@dataclass(frozen=True, slots=True)
class ViewDifference:
    table: str
    detail: str


def first_difference(live: list[tuple[object, ...]], replay: list[tuple[object, ...]]) -> str:
    """Where two tables' ordered rows first differ, for a person."""
    for index, (a, b) in enumerate(zip(live, replay, strict=False)):
        if a != b:
            return f"row {index}: live {a!r} != replayed {b!r}"
    return f"{len(live)} live rows, {len(replay)} replayed rows"
