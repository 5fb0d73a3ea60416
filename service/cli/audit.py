"""``history | rebuild | verify``: reading the log as an auditor does, on either backend."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from eventstore import RecordedEvent, verify_store
from eventstore.backends import is_postgresql
from service.cli.common import missing_database, open_service_store
from service.config import Config
from service.domain.streams import invoice_stream
from service.presenters import history_entry
from service.progress import Progress
from service.storage.view_tables import ViewDifference


def rebuild(config: Config, args: argparse.Namespace) -> int:
    if missing_database(config):
        return 2
    progress = Progress("rebuilding views")

    async def replay() -> int:
        async with await open_service_store(config) as store:
            return await store.rebuild_projections(progress)

    count = asyncio.run(replay())
    elapsed = progress.finish()
    print(f"rebuilt the views from {count:,} events in {elapsed:.1f}s")
    return 0


def history(config: Config, args: argparse.Namespace) -> int:
    async def read() -> list[RecordedEvent]:
        async with await open_service_store(config) as store:
            return [event async for event in store.read_stream(invoice_stream(args.invoice))]

    if missing_database(config):
        return 2
    events = asyncio.run(read())
    if not events:
        print(f"error: no invoice {args.invoice!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([history_entry(event) for event in events], indent=2))
        return 0
    first = events[0].data
    print(
        f"{args.invoice}  {first['service']} {first['source']}  buyer {first['username']}"
        f"  total {first['total_amount']:,}"
    )
    for event in events:
        entry = history_entry(event)
        print(
            f"  #{entry['position']:<8} {entry['recorded_at']}  {entry['type']:<22}"
            f" by {entry['actor'] or '?':<22} {_summary(event)}"
        )
    return 0


# "expected": what the invoice asked, beside the "amount" of a payment that was not that;
# "reference" and "reason": a mark-paid's, as its platform or admin gave them.
_SUMMARY_KEYS = (
    "invoice_onmarket",
    "amount",
    "expected",
    "seller_amount",
    "commission",
    "payment_id",
    "reference",
    "reason",
)
# Text a caller wrote: shown quoted and escaped, so that a control character in it cannot
# move the cursor or rewrite the lines of the operator's terminal.
_FREE_TEXT = frozenset({"reference", "reason"})


def _summary(event: RecordedEvent) -> str:
    """The event's gist for a person: amounts and who, not every field."""
    data = event.data
    parts = [_shown(key, data[key]) for key in _SUMMARY_KEYS if data.get(key) is not None]
    return ", ".join(parts)


def _shown(key: str, value: object) -> str:
    if isinstance(value, int):
        return f"{key.replace('_', ' ')} {value:,}"
    if key in _FREE_TEXT:
        return f"{key} {json.dumps(value)}"  # ASCII: no C1 control either
    return f"{key} {value}"


def verify(config: Config, args: argparse.Namespace) -> int:
    if missing_database(config):
        return 2
    database = config.database

    async def check() -> int:
        # Not opened as a store: verifying a database (a backup, say) must not change it.
        report = await verify_store(database)
        if not report.ok:
            where = f" at position {report.first_bad_position}" if report.first_bad_position else ""
            print(f"FAILED: the log does not verify{where}: {report.reason}")
            return 1
        print(f"log ok: {report.events_checked:,} events, hash chain intact, guards in place")
        differences = await _views_against_a_replay(database)
        for difference in differences:
            print(f"FAILED: view {difference.table} differs from a replay: {difference.detail}")
        if differences:
            return 1
        print("views ok: equal to a fresh replay of the log")
        return 0

    return asyncio.run(check())


async def _views_against_a_replay(database: str) -> list[ViewDifference]:
    if is_postgresql(database):
        from service.storage.postgresql import views_check as postgresql_check

        return await postgresql_check.compare_views_with_replay(database)
    from service.storage.sqlite import views_check as sqlite_check

    return await sqlite_check.compare_views_with_replay(Path(database))
