"""Opening an event store by where it lives: ``open_store(location)``.

A path (``str`` or ``os.PathLike``) is an SQLite file (``eventstore.sqlite``). A URL names its
backend by its scheme in ``URL_BACKENDS``: ``"module:attribute"`` of a coroutine function called
as ``opener(url, projectors=..., **options)`` that returns an ``EventStore``. Adding a backend is
adding its module and one entry here; its module is imported only when a store of its kind is
opened, so nobody loads a database driver they do not use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from eventstore.errors import UnsupportedLocation
from eventstore.interface import EventStore
from eventstore.projections import Projector

# URL scheme -> "module:attribute" of its opener. PostgreSQL comes next ("postgresql").
URL_BACKENDS: Final[Mapping[str, str]] = MappingProxyType({})


async def open_store(
    location: str | os.PathLike[str],
    *,
    projectors: Sequence[Projector[Any]] = (),
    **options: Any,
) -> EventStore:
    """Open (creating if needed) the store at ``location`` with ``projectors`` of its backend;
    ``options`` are that backend's own (``SQLiteEventStore.open``'s for a file)."""
    text = os.fspath(location)
    scheme, is_url, _ = text.partition("://")
    if not is_url:
        from eventstore.sqlite.store import SQLiteEventStore

        return await SQLiteEventStore.open(text, projectors=projectors, **options)
    entry = URL_BACKENDS.get(scheme.lower())
    if entry is None:
        raise UnsupportedLocation(
            f"{scheme}:// event stores are not yet supported; give the path of an SQLite file"
        )
    module, _, attribute = entry.partition(":")
    opener: Any = importlib.import_module(module)
    for name in attribute.split("."):
        opener = getattr(opener, name)
    store: EventStore = await opener(text, projectors=projectors, **options)
    return store
