"""Rows as arrays: how the PostgreSQL views write a batch in one statement.

``INSERT … SELECT … FROM unnest($1::bigint[], $2::text[], …)`` takes one array per column, so a
rebuild's page of thousands of rows is one round trip, where ``executemany`` would send a
statement per row.
"""

from __future__ import annotations

from collections.abc import Sequence


def columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """``rows`` (each ``width`` long) as ``width`` lists, one per column."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
