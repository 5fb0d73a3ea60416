"""What a projector of the PostgreSQL store is, and the SQL for the events it reads.

A projector of this store is an ``AsyncProjector`` that receives the writer's
``asyncpg.Connection`` inside the append's transaction (``PostgreSQLProjector``); the
backend-neutral ``EventSelection`` it names as ``reads`` becomes an SQL condition here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from eventstore.projections import AsyncProjector, AsyncReplayer, EventSelection

# A connection of its own or one lent by a pool: both run the same queries.
AnyConnection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
PostgreSQLProjector: TypeAlias = AsyncProjector[asyncpg.Connection]
PostgreSQLReplayer: TypeAlias = AsyncReplayer[asyncpg.Connection]


def selection_sql(selection: EventSelection, first_parameter: int) -> tuple[str, list[object]]:
    """An SQL condition on the events table selecting ``selection``'s events, and its
    parameters, numbered from ``$first_parameter``."""
    terms = [f"type = ANY(${first_parameter}::text[])"] if selection.types else []
    parameters: list[object] = [sorted(selection.types)] if selection.types else []
    for prefix in selection.stream_prefixes:
        terms.append(f"starts_with(stream_id, ${first_parameter + len(parameters)})")
        parameters.append(prefix)
    return f"({' OR '.join(terms) or 'FALSE'})", parameters


def union_of_reads(projectors: Sequence[PostgreSQLProjector]) -> EventSelection | None:
    """The events any of ``projectors`` reads; None when one of them reads every event."""
    union = EventSelection()
    for projector in projectors:
        reads: EventSelection | None = getattr(projector, "reads", None)
        if reads is None:
            return None
        union = union.union(reads)
    return union
