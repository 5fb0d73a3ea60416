"""Which views go with which store: each backend's projectors and read model, chosen by where
the database lives.

The service opens its store with ``projectors_for(location)`` and reads it through
``read_model_of(store)``; neither it nor its handlers name a backend. Adding a backend adds its
views' subpackage (``service/views/<backend>/``) and one branch to each function here.
"""

from __future__ import annotations

import os
from typing import Any

from eventstore import AsyncProjector, EventStore, Projector
from eventstore.backends import is_postgresql, is_url
from service.views.read_model import ReadModel


def projectors_for(
    location: str | os.PathLike[str],
) -> list[Projector[Any]] | list[AsyncProjector[Any]]:
    """The inline views a store at ``location`` keeps beside its log."""
    if is_postgresql(location):
        from service.views.postgresql import all_projectors as postgresql_projectors

        views: list[AsyncProjector[Any]] = list(postgresql_projectors())
        return views
    if is_url(location):
        raise ValueError(f"no views for a store at {location!r}")
    from service.views.sqlite import all_projectors

    return list(all_projectors())


def read_model_of(store: EventStore) -> ReadModel:
    """The read model over the views kept in ``store``'s database."""
    from eventstore.postgresql import PostgreSQLEventStore
    from eventstore.sqlite import SQLiteEventStore
    from service.views.postgresql import PostgreSQLReadModel
    from service.views.sqlite import SQLiteReadModel

    if isinstance(store, SQLiteEventStore):
        return SQLiteReadModel(store)
    if isinstance(store, PostgreSQLEventStore):
        return PostgreSQLReadModel(store.pool)
    raise TypeError(f"no read model for {type(store).__name__}")
