"""Do the views equal a fresh replay of the log? Replays into a copy and compares every row.

The live database is never touched: it is copied with SQLite's online backup API, the copy's
views are rebuilt from its log, and each view table is compared row by row with the original.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eventstore import EventStore
from service.projections import all_projectors

# Each view table and the columns that order its rows.
VIEW_TABLES = {
    "invoice_view": "seq",
    "invoice_waybills": "waybill_number, seq",
    "ledger_entries": "position, line",
    "account_balances": "account",
    "users": "username",
}


@dataclass(frozen=True, slots=True)
class ViewDifference:
    table: str
    detail: str


async def compare_views_with_replay(database: Path) -> list[ViewDifference]:
    """The view tables that differ from a fresh replay of the log (empty if none)."""
    with tempfile.TemporaryDirectory(prefix="verify-") as folder:
        copy = Path(folder) / "replay.db"
        _backup(database, copy)
        async with await EventStore.open(copy, projectors=all_projectors()) as store:
            await store.rebuild_projections()
        return _differences(database, copy)


def _backup(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _differences(live_path: Path, replay_path: Path) -> list[ViewDifference]:
    live = sqlite3.connect(f"{live_path.resolve().as_uri()}?mode=ro", uri=True)
    replay = sqlite3.connect(replay_path)
    try:
        found = []
        for table, order in VIEW_TABLES.items():
            live_rows = live.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            replay_rows = replay.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            if live_rows != replay_rows:
                found.append(ViewDifference(table, _first_difference(live_rows, replay_rows)))
        return found
    finally:
        live.close()
        replay.close()


def _first_difference(live: list[tuple[object, ...]], replay: list[tuple[object, ...]]) -> str:
    for index, (a, b) in enumerate(zip(live, replay, strict=False)):
        if a != b:
            return f"row {index}: live {a!r} != replayed {b!r}"
    return f"{len(live)} live rows, {len(replay)} replayed rows"
