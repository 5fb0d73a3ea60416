"""Do the views equal a fresh replay of the log? Replays into a copy and compares every row.

The live database is only read: one consistent snapshot is taken with SQLite's online backup
API, a second copy of it has its views rebuilt from its log, and each view table of the two is
compared row by row.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from eventstore.sqlite import SQLiteEventStore
from service.storage.sqlite.backup import copy_database
from service.storage.view_tables import VIEW_TABLES, ViewDifference, first_difference
from service.views.sqlite import all_projectors

# VIEW_TABLES is shared by every backend's check; tests of this one import it from here.
__all__ = ["VIEW_TABLES", "ViewDifference", "compare_views_with_replay"]


async def compare_views_with_replay(database: Path) -> list[ViewDifference]:
    """The view tables that differ from a fresh replay of the log (empty if none).

    Both sides come from one snapshot: a running service may write meanwhile, so the views as
    they stood at the snapshot are compared with a replay of the snapshot's own log."""
    with tempfile.TemporaryDirectory(prefix="verify-") as folder:
        snapshot, replay = Path(folder) / "snapshot.db", Path(folder) / "replay.db"
        _backup(database, snapshot)
        _backup(snapshot, replay)
        async with await SQLiteEventStore.open(replay, projectors=all_projectors()) as store:
            await store.rebuild_projections()
        return _differences(snapshot, replay)


def _backup(source: Path, target: Path) -> None:
    copy_database(source, target)


def _differences(live_path: Path, replay_path: Path) -> list[ViewDifference]:
    live = sqlite3.connect(f"{live_path.resolve().as_uri()}?mode=ro", uri=True)
    replay = sqlite3.connect(replay_path)
    try:
        found = []
        for table, order in VIEW_TABLES.items():
            live_rows = live.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            replay_rows = replay.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            if live_rows != replay_rows:
                found.append(ViewDifference(table, first_difference(live_rows, replay_rows)))
        return found
    finally:
        live.close()
        replay.close()
