"""Tamper evidence: recompute the hash chain and check the log's own guards are in place.

Every event's hash covers its position and content and the previous event's hash, so an edited,
deleted, reordered or inserted row breaks the chain at (or right after) that row. A wholesale
rewrite of the chain from some row on is not detectable from the log alone; anchoring the head
hash elsewhere (a backup, a receipt) closes that gap.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eventstore.chain import ChainWalk
from eventstore.model import VerifyReport
from eventstore.sqlite.schema import EVENT_COLUMNS, GUARD_TRIGGERS


def verify_file(path: Path, page_size: int, busy_timeout: float) -> VerifyReport:
    """Verify the log in the file at ``path``, on a read-only connection of its own."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=busy_timeout
    )
    try:
        return verify_log(conn, page_size)
    finally:
        conn.close()


def verify_log(conn: sqlite3.Connection, page_size: int) -> VerifyReport:
    """Walk every event in position order; stop at the first one that does not match."""
    # One read transaction, so the walk sees one consistent snapshot while appends go on.
    conn.execute("BEGIN")
    try:
        return _walk(conn, page_size)
    finally:
        conn.execute("COMMIT")


def _walk(conn: sqlite3.Connection, page_size: int) -> VerifyReport:
    missing = _missing_triggers(conn)
    walk = ChainWalk()
    while True:
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (walk.position, page_size),
        ).fetchall()
        broken = walk.check(rows)
        if broken is not None:
            return broken
        if len(rows) < page_size:
            return walk.finish(missing)


def _missing_triggers(conn: sqlite3.Connection) -> list[str]:
    present = {
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    return [name for name in GUARD_TRIGGERS if name not in present]
