"""What a projector of the SQLite store is, the SQL for the events it reads, its tables.

A projector of this store receives the writer's ``sqlite3.Connection`` (``SQLiteProjector``); the
backend-neutral ``EventSelection`` it names as ``reads`` becomes an SQL condition here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TypeAlias

from eventstore.projections import EventSelection, Projector, Replayer

SQLiteProjector: TypeAlias = Projector[sqlite3.Connection]
SQLiteReplayer: TypeAlias = Replayer[sqlite3.Connection]


def selection_sql(selection: EventSelection) -> tuple[str, list[object]]:
    """An SQL condition on the events table selecting ``selection``'s events, and its
    parameters."""
    types = sorted(selection.types)
    terms = [f"type IN ({', '.join('?' * len(types))})"] if types else []
    terms += ["substr(stream_id, 1, ?) = ?"] * len(selection.stream_prefixes)
    parameters: list[object] = list(types)
    for prefix in selection.stream_prefixes:
        parameters += [len(prefix), prefix]
    return f"({' OR '.join(terms) or 'FALSE'})", parameters


def view_tables(projectors: Sequence[SQLiteProjector]) -> list[str]:
    """The tables ``projectors`` name (``Projector.tables``), in order, each once."""
    names = (table for projector in projectors for table in getattr(projector, "tables", ()))
    return list(dict.fromkeys(names))
