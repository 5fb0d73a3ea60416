"""Moving a whole log into another store: ``python -m service migrate-store SOURCE TARGET``.

How a user who outgrows one SQLite file moves to PostgreSQL (or back) without losing history:
every event is copied unchanged (``EventStore.import_events``: id, position, time, data, metadata
and hash), then the checkpoints of the jobs whose effects are in the log (``LOG_SUBSCRIPTIONS``:
the webhook outbox, the refund worker), so that on the target they go on from where they were
instead of making those effects again for old events; then the target's views are rebuilt from
it and its hash chain verified. The target
must be empty, or a part-copy of the source that an interrupted run left: then the copy goes on
from where it stopped, so running the command again is always safe. Events the source gains
while a copy runs are not taken (the copy ends at the source's head as it started); run the
command again, with the service stopped, to take them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from eventstore import EventStore, RecordedEvent, VerifyReport, open_store
from service.jobs import LOG_SUBSCRIPTIONS
from service.views.backends import projectors_for

# Events copied in one transaction of the target: few enough to keep memory flat, many enough
# that a commit costs little per event.
PAGE = 2_000

Progress = Callable[[int, int], None]


class MigrationRefused(Exception):
    """The target holds events that are not the start of the source's log; nothing was
    written to it."""


@dataclass(frozen=True, slots=True)
class Copied:
    """What ``copy_log`` did: events copied by this run, after how many a run before it had
    copied, the source's head it copied up to, and where the log's subscriptions' checkpoints
    stand on the target."""

    copied: int
    resumed_after: int
    head_position: int
    checkpoints: dict[str, int]


async def copy_log(source: str, target: str, progress: Progress | None = None) -> Copied:
    """Copy the log at ``source`` into the store at ``target``, in pages, from where an earlier
    run stopped. Raises ``MigrationRefused`` for a target that is not empty nor a part-copy."""
    # The source is opened without views: nothing of its own tables is touched.
    async with (
        await open_store(source) as origin,
        await open_store(target, projectors=projectors_for(target)) as copy,
    ):
        total = await origin.head_position()
        resumed_after = await _copied_so_far(origin, copy, target)
        copied = await _copy(origin, copy, resumed_after, total, progress)
        checkpoints = await _copy_checkpoints(origin, copy, total)
    return Copied(copied, resumed_after, total, checkpoints)


async def rebuild_and_verify(target: str, progress: Progress | None = None) -> VerifyReport:
    """Replay the log at ``target`` into its views, then walk its hash chain."""
    async with await open_store(target, projectors=projectors_for(target)) as copy:
        await copy.rebuild_projections(progress)
        await copy.checkpointed()
        return await copy.verify()


async def _copied_so_far(origin: EventStore, copy: EventStore, target: str) -> int:
    """The position up to which ``copy`` already holds ``origin``'s log (0 when empty)."""
    head = await copy.head_position()
    if head == 0:
        return 0
    theirs = await _event_at(origin, head)
    ours = await _event_at(copy, head)
    if theirs is None or ours is None or theirs.hash != ours.hash:
        raise MigrationRefused(
            f"{display(target)} already holds {head:,} events that are not the start of the"
            " source's log; give an empty database"
        )
    return head


async def _event_at(store: EventStore, position: int) -> RecordedEvent | None:
    async for event in store.read_all(position - 1):
        return event if event.position == position else None
    return None


async def _copy(
    origin: EventStore, copy: EventStore, after: int, total: int, progress: Progress | None
) -> int:
    page: list[RecordedEvent] = []
    done = after
    async for event in origin.read_all(after):
        if event.position > total:
            break
        page.append(event)
        if len(page) == PAGE:
            done = await copy.import_events(page)
            page = []
            if progress:
                progress(done, total)
    if page:
        done = await copy.import_events(page)
    if progress:
        progress(done, total)
    return done - after


async def _copy_checkpoints(origin: EventStore, copy: EventStore, head: int) -> dict[str, int]:
    """Move each of the log's subscriptions on ``copy`` to where it stands on ``origin``, but
    never past ``head`` (events the source gained during the copy are not on the target: their
    effects, if any, come with them on the next run) and never back (a checkpoint moves only
    forward; a resumed copy may find it already there). Answers where each stands on ``copy``."""
    placed: dict[str, int] = {}
    for name in LOG_SUBSCRIPTIONS:
        wanted = min(await origin.load_checkpoint(name), head)
        if wanted > await copy.load_checkpoint(name):
            await copy.save_checkpoint(name, wanted)
        placed[name] = await copy.load_checkpoint(name)
    return placed


def display(location: str | os.PathLike[str]) -> str:
    """A location fit to print: a URL's password is never shown."""
    text = os.fspath(location)
    parts = urlsplit(text)
    if "://" not in text or parts.password is None:
        return text
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
