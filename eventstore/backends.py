"""Reaching an event store by where it lives: ``open_store(location)``, ``verify_store(location)``.

A path (``str`` or ``os.PathLike``) is an SQLite file (``eventstore.sqlite``). A URL names its
backend by its scheme in ``URL_BACKENDS``: the module that implements it, which has two coroutine
functions, ``open_url(url, *, projectors, **options) -> EventStore`` and ``verify_url(url) ->
VerifyReport``. Adding a backend is adding its module and one entry here; its module is imported
only when a store of its kind is reached, so nobody loads a database driver they do not use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Final

from eventstore.errors import UnsupportedLocation
from eventstore.interface import EventStore
from eventstore.model import VerifyReport
from eventstore.projections import AsyncProjector, Projector

# URL scheme -> the module of its backend.
URL_BACKENDS: Final[Mapping[str, str]] = MappingProxyType(
    {"postgresql": "eventstore.postgresql", "postgres": "eventstore.postgresql"}
)

# Events read at a time when a whole log is verified from outside a running store.
VERIFY_PAGE = 10_000


async def open_store(
    location: str | os.PathLike[str],
    *,
    projectors: Sequence[Projector[Any]] | Sequence[AsyncProjector[Any]] = (),
    **options: Any,
) -> EventStore:
    """Open (creating if needed) the store at ``location`` with ``projectors`` of its backend
    (``Projector``s for SQLite, ``AsyncProjector``s for PostgreSQL); ``options`` are that
    backend's own (``SQLiteEventStore.open``'s for a file, ``PostgreSQLEventStore.open``'s for
    a ``postgresql://`` URL, whose database must exist)."""
    text = os.fspath(location)
    backend = _url_backend(text)
    if backend is None:
        from eventstore.sqlite.store import SQLiteEventStore

        return await SQLiteEventStore.open(
            text,
            projectors=projectors,  # type: ignore[arg-type]
            **options,
        )
    store: EventStore = await backend.open_url(text, projectors=projectors, **options)
    return store


async def verify_store(location: str | os.PathLike[str]) -> VerifyReport:
    """Walk the hash chain of the log at ``location`` without opening it for writing: nothing
    is migrated, created or changed, so a backup or a copy can be checked as it is."""
    text = os.fspath(location)
    backend = _url_backend(text)
    if backend is None:
        # Imported here: a rebuild's worker imports this package and must not pay for asyncio.
        import asyncio

        from eventstore.sqlite.verification import verify_file

        return await asyncio.to_thread(verify_file, Path(text), VERIFY_PAGE, 5.0)
    report: VerifyReport = await backend.verify_url(text)
    return report


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a URL (a database server) rather than the path of an SQLite file."""
    return "://" in os.fspath(location)


def is_postgresql(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names a PostgreSQL database."""
    scheme, _, _ = os.fspath(location).partition("://")
    return is_url(location) and URL_BACKENDS.get(scheme.lower()) == "eventstore.postgresql"


def _url_backend(location: str) -> ModuleType | None:
    """The module of the backend a URL names; None for a path (an SQLite file)."""
    scheme, is_url, _ = location.partition("://")
    if not is_url:
        return None
    module = URL_BACKENDS.get(scheme.lower())
    if module is None:
        raise UnsupportedLocation(
            f"{scheme}:// event stores are not yet supported; give the path of an SQLite file"
            " or a postgresql:// URL"
        )
    return importlib.import_module(module)
