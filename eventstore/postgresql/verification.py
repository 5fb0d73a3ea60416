"""Tamper evidence on PostgreSQL: recompute the hash chain, and check the log's guards.

The walk reads the log in pages on one ``REPEATABLE READ`` snapshot, so it sees one consistent
log while appends go on, and recomputes every hash with ``records.chain_hash``: the same code
SQLite's verification runs, so a log copied between backends verifies identically. Besides the
chain, the guard triggers must be present and enabled; a log whose guards were removed or
disabled is not ``ok`` even when its chain still holds.
"""

from __future__ import annotations

from eventstore.model import VerifyReport
from eventstore.postgresql.projection import AnyConnection
from eventstore.postgresql.schema import EVENT_COLUMNS, GUARD_TRIGGERS
from eventstore.records import GENESIS_HASH, chain_hash


async def verify_log(conn: AnyConnection, page_size: int) -> VerifyReport:
    """Walk every event in position order; stop at the first one that does not match."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if await conn.fetchval("SELECT to_regclass('events')") is None:
            return VerifyReport(ok=False, events_checked=0, head_position=0, reason="no event log")
        return await _walk(conn, page_size)


async def _walk(conn: AnyConnection, page_size: int) -> VerifyReport:
    missing = await _missing_guards(conn)
    expected_hash, position, checked = GENESIS_HASH, 0, 0
    query = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
    while True:
        rows = await conn.fetch(query, position, page_size)
        for record in rows:
            row = tuple(record)
            if row[0] != position + 1:
                return _bad(checked, row[0], position + 1, f"position {position + 1} is missing")
            expected_hash = chain_hash(expected_hash, row[:-1])
            if row[-1] != expected_hash:
                return _bad(checked, row[0], row[0], "hash does not match the event's content")
            position, checked = row[0], checked + 1
        if len(rows) < page_size:
            break
    if missing:
        return VerifyReport(
            ok=False,
            events_checked=checked,
            head_position=position,
            reason=f"guard trigger(s) missing or disabled: {', '.join(missing)}",
        )
    return VerifyReport(ok=True, events_checked=checked, head_position=position)


def _bad(checked: int, head: int, bad_position: int, reason: str) -> VerifyReport:
    return VerifyReport(
        ok=False,
        events_checked=checked,
        head_position=head,
        first_bad_position=bad_position,
        reason=reason,
    )


async def _missing_guards(conn: AnyConnection) -> list[str]:
    rows = await conn.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass AND tgenabled <> 'D'"
    )
    present = {row[0] for row in rows}
    return [name for name in GUARD_TRIGGERS if name not in present]
