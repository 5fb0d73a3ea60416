"""What the contract suite needs of a backend, besides the ``EventStore`` interface itself.

A backend here opens stores on one fresh database and reaches that database behind the store's
back, in the few ways the contract speaks of (the stored text of an event, an edit an attacker
might make, a client trying to change the log), and writes the suite's two sample views in its
own terms: projectors are written per backend (``Projector[C]``). ``tests/conftest.py`` lists
the backends in ``BACKENDS``; a new backend adds a module here with a class like
``SQLiteBackend`` and one entry there.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from eventstore import (
    NO_STREAM,
    AsyncProjector,
    EventSelection,
    EventStore,
    NewEvent,
    Projector,
    RecordedEvent,
)

Change = Literal["update", "delete"]

# The events the sample view ``offered`` reads in a rebuild.
WANTED = EventSelection(types=frozenset({"Wanted"}), stream_prefixes=("keep-",))


class TotalsRules:
    """The sample view ``totals`` (the sum of ``amount`` per stream) apart from its rows: every
    backend's version waits while ``pause`` is clear (to hold an append inside its transaction)
    and refuses a negative amount (to fail an append on purpose)."""

    name = "totals"

    def __init__(self) -> None:
        self.pause = threading.Event()
        self.pause.set()

    def amounts(self, events: Sequence[RecordedEvent]) -> list[tuple[str, int]]:
        """``(stream, amount)`` of each event, once ``pause`` is set; raises on a negative."""
        self.pause.wait(5)
        amounts = []
        for event in events:
            amount = event.data["amount"]
            if amount < 0:
                raise ValueError("negative amount")
            amounts.append((event.stream_id, amount))
        return amounts


class OfferedRules:
    """The sample view ``offered``: the position of every event ``apply`` is offered, whatever
    it selects; it reads ``WANTED`` in a rebuild."""

    name = "offered"
    reads = WANTED


class Backend(Protocol):
    """One backend's database for one test, and its hands behind the store's back."""

    name: str
    last_events_chunk: int
    """Streams ``last_events`` asks for in one query, so that a test can ask for more."""
    refused: type[Exception]
    """What this database raises when a client tries to change the log."""

    @property
    def location(self) -> str:
        """Where the database is, as ``open_store`` and ``verify_store`` take it."""
        ...

    async def open(self, **options: Any) -> EventStore:
        """A store on this backend's database. Every backend takes ``projectors`` (its own
        sample views below), ``page_size``, ``clock`` and ``poll_interval``."""
        ...

    def dispose(self) -> None:
        """Remove the database, once the test's stores are closed (a no-op for a file in the
        test's folder)."""
        ...

    def stored_text(self, position: int) -> tuple[str, str, str]:
        """The data, metadata and time of the event at ``position``, as the database holds them."""
        ...

    def tamper_data(self, position: int, data_json: str) -> None:
        """Overwrite the stored data of the event at ``position``, the log's guards removed
        first: what someone with full access to the database could do."""
        ...

    def change_event(self, change: Change, position: int) -> None:
        """Update or delete the event at ``position`` as a plain client of the database would,
        the guards in place (so it must raise ``refused``, saying "append-only")."""
        ...

    def totals_view(self) -> TotalsView | AsyncTotalsView:
        """A new ``totals`` view for this backend."""
        ...

    def totals(self) -> dict[str, int]:
        """The rows of the ``totals`` view: stream -> total."""
        ...

    def clear_totals(self) -> None:
        """Delete every row of the ``totals`` view behind the store's back."""
        ...

    def offered_view(self) -> Projector[Any] | AsyncProjector[Any]:
        """A new ``offered`` view for this backend."""
        ...

    def offered(self) -> list[int]:
        """The positions in the ``offered`` view, in order."""
        ...


class TotalsView(Projector[Any], Protocol):
    """A backend's ``totals`` view: a projector with ``TotalsRules.pause``."""

    pause: threading.Event


class AsyncTotalsView(AsyncProjector[Any], Protocol):
    """A ``totals`` view of a backend with asynchronous projectors."""

    pause: threading.Event


async def append_mixed(backend: Backend, **options: Any) -> list[int]:
    """Twelve events, one per stream, of which positions 1, 4, 5, 7, 10 are ``WANTED``;
    returns those."""
    async with await backend.open(**options) as store:
        for i in range(12):
            stream = f"keep-{i}" if i % 3 == 0 else f"drop-{i}"
            kind = "Wanted" if i in (4, 6) else "Other"
            await store.append(stream, [NewEvent(kind, {"i": i})], NO_STREAM)
    return [1, 4, 5, 7, 10]
