"""Do an app's views equal a fresh replay of its log? The same question on either backend.

SQLite answers with ``compare_views_with_replay`` (what ``python -m service verify`` runs: a
snapshot of the file, replayed). PostgreSQL answers as ``migrate-store`` would move the log: the
events are copied into a database of the test's own (``copy_log``), its views rebuilt and its
hash chain verified (``rebuild_and_verify``), and every view table compared row by row with the
live one. Call it when the app is quiet: the live views are read after the copy is taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventstore import EventStore, open_store
from eventstore.backends import is_postgresql
from service.migration import copy_log, rebuild_and_verify
from service.storage.sqlite.views_check import compare_views_with_replay
from service.views.backends import projectors_for
from tests.pgdb import fresh_database
from tests.sqlviews import view_tables


async def replay_differences(store: EventStore, location: str) -> list[str]:
    """The view tables of the live ``store`` (opened at ``location``) that differ from a
    replay of its log, each with its first difference; empty if none."""
    if not is_postgresql(location):
        return [f"{d.table}: {d.detail}" for d in await compare_views_with_replay(Path(location))]
    async with fresh_database("replay") as copy:
        await copy_log(location, copy)
        report = await rebuild_and_verify(copy)
        assert report.ok, report
        async with await open_store(copy, projectors=projectors_for(copy)) as replayed:
            theirs = await view_tables(replayed)
        ours = await view_tables(store)
    return [
        f"{table}: {first_difference(rows, theirs[table])}"
        for table, rows in ours.items()
        if rows != theirs[table]
    ]


def first_difference(live: list[tuple[Any, ...]], replayed: list[tuple[Any, ...]]) -> str:
    for index, (a, b) in enumerate(zip(live, replayed, strict=False)):
        if a != b:
            return f"row {index}: live {a!r} != replayed {b!r}"
    return f"{len(live)} live rows, {len(replayed)} replayed rows"
