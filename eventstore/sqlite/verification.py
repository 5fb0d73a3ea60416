"""Tamper evidence: recompute the hash chain and check the log's own guards are in place.

Every event's hash covers its position and content and the previous event's hash, so an edited,
deleted, reordered or inserted row breaks the chain at (or right after) that row. A wholesale
rewrite of the chain from some row on is not detectable from the log alone; anchoring the head
hash elsewhere (a backup, a receipt) closes that gap.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eventstore.model import VerifyReport
from eventstore.records import GENESIS_HASH, chain_hash
from eventstore.sqlite.schema import GUARD_TRIGGERS


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
    expected_hash, position, checked = GENESIS_HASH, 0, 0
    while True:
        rows = conn.execute(
            "SELECT position, event_id, stream_id, version, type, data, metadata, recorded_at,"
            " hash FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (position, page_size),
        ).fetchall()
        for row in rows:
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
            reason=f"guard trigger(s) missing: {', '.join(missing)}",
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


def _missing_triggers(conn: sqlite3.Connection) -> list[str]:
    present = {
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    return [name for name in GUARD_TRIGGERS if name not in present]
