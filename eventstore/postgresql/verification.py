"""Tamper evidence on PostgreSQL: recompute the hash chain, and check the log's guards.

The walk reads the log in pages on one ``REPEATABLE READ`` snapshot, so it sees one consistent
log while appends go on, and recomputes every hash with ``records.chain_hash``: the same code
SQLite's verification runs, so a log copied between backends verifies identically. Besides the
chain, the guard triggers must be present and enabled; a log whose guards were removed or
disabled is not ``ok`` even when its chain still holds.
"""

from __future__ import annotations

from eventstore.chain import ChainWalk
from eventstore.model import VerifyReport
from eventstore.postgresql.projection import AnyConnection
from eventstore.postgresql.schema import EVENT_COLUMNS, GUARD_TRIGGERS


async def verify_log(conn: AnyConnection, page_size: int) -> VerifyReport:
    """Walk every event in position order; stop at the first one that does not match."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if await conn.fetchval("SELECT to_regclass('events')") is None:
            return VerifyReport(ok=False, events_checked=0, head_position=0, reason="no event log")
        return await _walk(conn, page_size)


async def _walk(conn: AnyConnection, page_size: int) -> VerifyReport:
    missing = await _missing_guards(conn)
    walk = ChainWalk()
    query = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
    while True:
        rows = await conn.fetch(query, walk.position, page_size)
        broken = walk.check(tuple(record) for record in rows)
        if broken is not None:
            return broken
        if len(rows) < page_size:
            return walk.finish(missing)


async def _missing_guards(conn: AnyConnection) -> list[str]:
    rows = await conn.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass AND tgenabled <> 'D'"
    )
    present = {row[0] for row in rows}
    return [name for name in GUARD_TRIGGERS if name not in present]
