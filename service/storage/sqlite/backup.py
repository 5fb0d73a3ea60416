"""Online backups: a consistent copy of the live database, verified before it is kept.

SQLite's backup API copies the whole file in one step inside a read transaction, so the copy is
one consistent snapshot even while the service writes (WAL readers never block the writer). It
is written to a temporary file beside the target and renamed into place only once it verifies,
so a half-written or broken copy never carries the backup's name.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from eventstore.sqlite import verify_file


@dataclass(frozen=True, slots=True)
class BackupReport:
    ok: bool
    events_checked: int
    head_position: int
    head_hash: str | None
    reason: str | None = None


async def backup_database(source: Path, target: Path) -> BackupReport:
    """Copy ``source`` to ``target`` (which must not exist) and verify the copy."""
    return await asyncio.to_thread(_backup, source, target)


def _backup(source: Path, target: Path) -> BackupReport:
    partial = target.with_name(f".{target.name}.partial")
    copy_database(source, partial)
    report = verify_file(partial, page_size=10_000, busy_timeout=5.0)
    if not report.ok:
        partial.unlink()
        return BackupReport(False, report.events_checked, report.head_position, None, report.reason)
    head_hash = _head_hash(partial)
    with open(partial, "rb") as copy:
        os.fsync(copy.fileno())
    try:
        os.link(partial, target)  # unlike rename, never replaces a file that appeared meanwhile
    finally:
        partial.unlink()
    return BackupReport(True, report.events_checked, report.head_position, head_hash)


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of ``source`` (only read) as one self-contained file at ``target``."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one consistent snapshot
        dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
    finally:
        dst.close()
        src.close()


def _head_hash(path: Path) -> str | None:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
        return row[0] if row else None
    finally:
        conn.close()
