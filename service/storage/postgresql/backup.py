"""Backups of a PostgreSQL database: ``pg_dump``, then the dump restored and verified.

A dump in ``pg_dump``'s custom format is one consistent snapshot (``pg_dump`` reads in one
``REPEATABLE READ`` transaction), taken while the service writes. It is written beside the
target and takes the target's name only once it has been restored into a scratch database
(``pg_restore``) and that copy's hash chain verified, so a broken dump never carries the
backup's name. The scratch database is dropped afterwards. It needs ``pg_dump`` and
``pg_restore`` of the server's major version on the PATH and the right to create a database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from eventstore import verify_store
from service.storage.sqlite.backup import BackupReport


class BackupToolMissing(Exception):
    """``pg_dump`` or ``pg_restore`` is not on the PATH."""


async def backup_database(url: str, target: Path) -> BackupReport:
    """Dump the database at ``url`` to ``target`` (which must not exist) and verify the dump."""
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            raise BackupToolMissing(
                f"{tool} is not on the PATH (Debian: apt install postgresql-client)"
            )
    partial = target.with_name(f".{target.name}.partial")
    try:
        await _run("pg_dump", "--format=custom", f"--file={partial}", url)
        report = await _verify_dump(url, partial)
        if report.ok:
            os.link(partial, target)  # unlike rename, never replaces a file that appeared meanwhile
        return report
    finally:
        partial.unlink(missing_ok=True)


async def _verify_dump(url: str, dump: Path) -> BackupReport:
    scratch = f"backup_check_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{scratch}"')
        try:
            copy = _with_database(url, scratch)
            await _run("pg_restore", "--no-owner", f"--dbname={copy}", str(dump))
            report = await verify_store(copy)
            head_hash = await _head_hash(copy) if report.ok else None
        finally:
            await admin.execute(f'DROP DATABASE "{scratch}" WITH (FORCE)')
    finally:
        await admin.close()
    return BackupReport(
        report.ok, report.events_checked, report.head_position, head_hash, report.reason
    )


async def _head_hash(url: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval("SELECT hash FROM events ORDER BY position DESC LIMIT 1")
        return str(value) if value is not None else None
    finally:
        await conn.close()


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {errors.decode(errors='replace').strip()}")
