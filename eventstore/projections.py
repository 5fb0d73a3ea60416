"""Inline projections: view code that runs inside the append's own transaction.

A projector's ``apply`` is called on the writer's connection, inside the savepoint of the append
that produced the events, so the view rows commit atomically with their events and a reader never
sees one without the other. Its checkpoint is therefore the log's head by construction. A rebuild
calls ``reset`` (or replaces the view's tables, below) and then ``apply`` over the whole log with
the very same code (or the projector's own ``replayer``, below).

Three optional attributes make a rebuild cheaper; a projector without them is replayed every event
through its ``apply``:

- ``reads``: an :class:`EventSelection` of the events ``apply`` uses; a rebuild reads only
  those (``apply`` must still ignore the others: a live append passes it everything).
- ``tables``: the names of every table the view writes. A rebuild then replays the view into
  new tables of those names made from their stored schema (indexes, triggers), instead of
  calling ``reset``, and drops the old ones at the end; it builds the indexes made with
  ``CREATE INDEX`` after the replay instead of during it; and on a long log it may replay this
  projector in a worker process, into a scratch database set up with the projector's own
  ``setup``, and copy those tables in whole (see ``eventstore.rebuild``).
- ``replayer()``: a new :class:`Replayer` for one rebuild, which the rebuild gives every page
  instead of ``apply`` and then calls ``finish`` on: for work that costs less done once at the
  end than page by page (a sum over the whole view). It is made anew for each rebuild, so
  nothing of a failed one is left on the projector.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from eventstore.model import RecordedEvent


class Projector(Protocol):
    """A view kept in the same database as the log."""

    name: str

    def setup(self, conn: sqlite3.Connection) -> None:
        """Bring the view's tables up to date; runs at every open, in autocommit mode, so
        that it can use ``apply_migrations`` (each migration is its own transaction)."""

    def reset(self, conn: sqlite3.Connection) -> None:
        """Remove every row of the view, before a rebuild replays the log into it (a view
        that names its ``tables`` has them replaced instead)."""

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        """Fold committed-to-be events into the view; raising fails the append that made them."""


@dataclass(frozen=True, slots=True)
class EventSelection:
    """Events of any of ``types`` or of a stream whose id starts with any of
    ``stream_prefixes``."""

    types: frozenset[str] = frozenset()
    stream_prefixes: tuple[str, ...] = ()

    def union(self, other: EventSelection) -> EventSelection:
        prefixes = dict.fromkeys(self.stream_prefixes + other.stream_prefixes)
        return EventSelection(self.types | other.types, tuple(prefixes))

    def where(self) -> tuple[str, list[object]]:
        """An SQL condition on the events table selecting these events, and its parameters."""
        types = sorted(self.types)
        terms = [f"type IN ({', '.join('?' * len(types))})"] if types else []
        terms += ["substr(stream_id, 1, ?) = ?"] * len(self.stream_prefixes)
        parameters: list[object] = list(types)
        for prefix in self.stream_prefixes:
            parameters += [len(prefix), prefix]
        return f"({' OR '.join(terms) or 'FALSE'})", parameters


class Replayer(Protocol):
    """What replays a view in a rebuild: ``apply`` for each page of the log, in order, then
    ``finish(conn)``, if it has one, once after the last page, in the same transaction."""

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        """Fold a page of the log into the view."""
