"""Do the views on PostgreSQL equal a fresh replay of the log? Replays into a scratch schema.

The live views and the log are read in one ``REPEATABLE READ`` snapshot, so a service writing
meanwhile changes neither side: the views as they stood are compared with a replay of the log as
it stood. The replay goes into a schema of its own, made for the check and dropped after it, by
the service's own projectors on a connection whose ``search_path`` is that schema alone, so
nothing of the live tables is written and no append waits for the check (which a rebuild in a
rolled-back transaction would make wait). It needs the right to create a schema in the database.
"""

from __future__ import annotations

import uuid

import asyncpg

from eventstore.postgresql.rebuild import replay
from service.storage.view_tables import VIEW_TABLES, ViewDifference, first_difference
from service.views.postgresql import all_projectors

PAGE = 1_000


async def compare_views_with_replay(url: str) -> list[ViewDifference]:
    """The view tables that differ from a fresh replay of the log (empty if none)."""
    scratch = f"verify_{uuid.uuid4().hex}"
    live = await asyncpg.connect(url)
    try:
        await live.execute(f'CREATE SCHEMA "{scratch}"')
        try:
            return await _compare(live, url, scratch)
        finally:
            await live.execute(f'DROP SCHEMA "{scratch}" CASCADE')
    finally:
        await live.close()


async def _compare(live: asyncpg.Connection, url: str, scratch: str) -> list[ViewDifference]:
    replayed = await asyncpg.connect(url, server_settings={"search_path": scratch})
    try:
        projectors = all_projectors()
        for projector in projectors:
            await projector.setup(replayed)  # the views' tables, in the scratch schema only
        async with live.transaction(isolation="repeatable_read", readonly=True):
            head = int(await live.fetchval("SELECT COALESCE(MAX(position), 0) FROM events"))
            live_rows = {
                table: await _rows(live, table, order) for table, order in VIEW_TABLES.items()
            }
            async with replayed.transaction():
                await replay(replayed, projectors, head, PAGE, None, source=live)
        differences = []
        for table, order in VIEW_TABLES.items():
            replay_rows = await _rows(replayed, table, order)
            if live_rows[table] != replay_rows:
                detail = first_difference(live_rows[table], replay_rows)
                differences.append(ViewDifference(table, detail))
        return differences
    finally:
        await replayed.close()


async def _rows(conn: asyncpg.Connection, table: str, order: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")]
