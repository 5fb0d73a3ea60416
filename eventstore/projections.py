"""Inline projections: view code that runs inside the append's own transaction.

A projector's ``apply`` is called inside the transaction of the append that produced the events,
on that transaction's connection, so the view rows commit atomically with their events and a
reader never sees one without the other. Its checkpoint is therefore the log's head by
construction. A rebuild calls ``reset`` (or replaces the view's tables, below) and then ``apply``
over the whole log with the very same code (or the projector's own ``replayer``, below).

A projector is written for one backend: ``Projector[C]`` receives that backend's connection
type ``C`` (``sqlite3.Connection`` for ``eventstore.sqlite``), and a store takes only projectors
of its own backend. A backend whose driver is asynchronous takes ``AsyncProjector[C]``
(``asyncpg.Connection`` for ``eventstore.postgresql``): the same three calls with the same
meaning, as coroutines, and an ``AsyncReplayer`` for its ``replayer()``. A view kept on two
backends is two small classes, usually sharing the code that turns events into rows; adding a
backend adds projectors, it does not change the SQLite ones.

Three optional attributes make a rebuild cheaper; a projector without them is replayed every event
through its ``apply``:

- ``reads``: an :class:`EventSelection` of the events ``apply`` uses; a rebuild reads only
  those (``apply`` must still ignore the others: a live append passes it everything).
- ``tables``: the names of every table the view writes, which lets a backend replace them whole
  instead of calling ``reset`` (the SQLite store does, and may replay such a view in a worker
  process: see ``eventstore.sqlite.rebuild``).
- ``replayer()``: a new :class:`Replayer` for one rebuild, which the rebuild gives every page
  instead of ``apply`` and then calls ``finish`` on: for work that costs less done once at the
  end than page by page (a sum over the whole view). It is made anew for each rebuild, so
  nothing of a failed one is left on the projector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from eventstore.model import RecordedEvent

# Contravariant: a projector that accepts any connection serves a backend of any one kind.
C_contra = TypeVar("C_contra", contravariant=True)


class Projector(Protocol[C_contra]):
    """A view kept by the store, in the same transactions as the log, on connections of type
    ``C_contra``."""

    name: str

    def setup(self, conn: C_contra) -> None:
        """Bring the view's tables up to date; runs at every open, before the first append (the
        SQLite store calls it in autocommit mode, so that it can use ``apply_migrations``)."""

    def reset(self, conn: C_contra) -> None:
        """Remove every row of the view, before a rebuild replays the log into it (a view
        that names its ``tables`` may have them replaced instead)."""

    def apply(self, conn: C_contra, events: Sequence[RecordedEvent]) -> None:
        """Fold committed-to-be events into the view; raising fails the append that made them."""


class Replayer(Protocol[C_contra]):
    """What replays a view in a rebuild: ``apply`` for each page of the log, in order, then
    ``finish(conn)``, if it has one, once after the last page, in the same transaction."""

    def apply(self, conn: C_contra, events: Sequence[RecordedEvent]) -> None:
        """Fold a page of the log into the view."""


class AsyncProjector(Protocol[C_contra]):
    """A ``Projector`` of a backend whose driver is asynchronous: the same calls, awaited, with
    the same optional ``reads``, ``tables`` and ``replayer()`` (which makes an
    ``AsyncReplayer``)."""

    name: str

    async def setup(self, conn: C_contra) -> None:
        """Bring the view's tables up to date; runs at every open, before the first append, on
        a connection outside any transaction (so that it can apply its own migrations)."""

    async def reset(self, conn: C_contra) -> None:
        """Remove every row of the view, before a rebuild replays the log into it."""

    async def apply(self, conn: C_contra, events: Sequence[RecordedEvent]) -> None:
        """Fold committed-to-be events into the view; raising fails the append that made them."""


class AsyncReplayer(Protocol[C_contra]):
    """An ``AsyncProjector``'s ``Replayer``: ``await apply`` for each page, then ``await
    finish(conn)``, if it has one, once after the last page, in the same transaction."""

    async def apply(self, conn: C_contra, events: Sequence[RecordedEvent]) -> None:
        """Fold a page of the log into the view."""


@dataclass(frozen=True, slots=True)
class EventSelection:
    """Events of any of ``types`` or of a stream whose id starts with any of
    ``stream_prefixes`` (none of either: no events). Each backend turns it into its own query
    (``eventstore.sqlite.projection.selection_sql``)."""

    types: frozenset[str] = frozenset()
    stream_prefixes: tuple[str, ...] = ()

    def union(self, other: EventSelection) -> EventSelection:
        prefixes = dict.fromkeys(self.stream_prefixes + other.stream_prefixes)
        return EventSelection(self.types | other.types, tuple(prefixes))
