"""``backup | migrate-store``: copies of the whole database, each verified before it counts."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from eventstore import UnsupportedLocation, VerifyReport
from eventstore.backends import is_postgresql, is_url
from service.cli.common import missing_database
from service.config import Config
from service.migration import Copied, MigrationRefused, copy_log, display, rebuild_and_verify
from service.progress import Progress
from service.storage.sqlite.backup import BackupReport


def backup(config: Config, args: argparse.Namespace) -> int:
    target = Path(args.path)
    if missing_database(config):
        return 2
    if target.exists():
        print(f"error: {target} exists; choose a new path", file=sys.stderr)
        return 2
    if not target.parent.is_dir():
        print(f"error: the folder {target.parent} does not exist", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_backup(config.database, target))
    except (UnsupportedLocation, RuntimeError) as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    if not report.ok:
        print(f"FAILED: the copy does not verify: {report.reason}", file=sys.stderr)
        return 1
    print(
        f"backup written to {target}: {report.events_checked:,} events, verified;"
        f" head position {report.head_position}, head hash {report.head_hash}"
    )
    return 0


async def _backup(database: str, target: Path) -> BackupReport:
    if is_postgresql(database):
        from service.storage.postgresql import backup as postgresql_backup

        try:
            return await postgresql_backup.backup_database(database, target)
        except postgresql_backup.BackupToolMissing as missing:
            raise RuntimeError(str(missing)) from missing
    if is_url(database):
        raise UnsupportedLocation(f"no backups of {display(database)}")
    from service.storage.sqlite import backup as sqlite_backup

    return await sqlite_backup.backup_database(Path(database), target)


def migrate_store(config: Config, args: argparse.Namespace) -> int:
    source, target = args.source, args.target
    for location in (source, target):
        if not is_url(location) and not Path(location).parent.is_dir():
            print(f"error: the folder of {location} does not exist", file=sys.stderr)
            return 2
    if not is_url(source) and not Path(source).is_file():
        print(f"error: {source} does not exist", file=sys.stderr)
        return 2
    if source == target:
        print("error: the source and the target are the same store", file=sys.stderr)
        return 2
    copying, rebuilding = Progress("copying events"), Progress("rebuilding views")

    async def migrate() -> tuple[Copied, VerifyReport]:
        copied = await copy_log(source, target, copying)
        copying.finish()
        return copied, await rebuild_and_verify(target, rebuilding)

    try:
        copied, verified = asyncio.run(migrate())
    except (MigrationRefused, UnsupportedLocation, ValueError) as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    elapsed = rebuilding.finish()
    resumed = f" (resumed after position {copied.resumed_after:,})" if copied.resumed_after else ""
    print(
        f"copied {copied.copied:,} events{resumed} from {display(source)} to {display(target)};"
        f" views rebuilt in {elapsed:.1f}s"
    )
    placed = ", ".join(f"{name} at {at:,}" for name, at in copied.checkpoints.items())
    print(f"checkpoints carried over: {placed}")
    if not verified.ok:
        print(f"FAILED: the copy does not verify: {verified.reason}", file=sys.stderr)
        return 1
    print(
        f"verified: {verified.events_checked:,} events, head position"
        f" {verified.head_position:,}, hash chain intact"
    )
    return 0
