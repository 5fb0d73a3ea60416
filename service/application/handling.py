"""The one way a command is carried out: load the streams its decision needs, let the pure
domain decide, append what it decided with the versions the streams were read at, and decide
again from fresh state when a race was lost.

A handler writes only its own steps, as an ``attempt`` that reads through an ``Attempt`` (which
notes each stream's version) and stages events on it; ``Application.run`` does the rest. If any
stream moved between the read and the append, the store refuses the whole append with
``ConcurrencyError`` and ``run`` calls the attempt again, so two racing commands can never both
act on the same old state. The retry policy lives here and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from eventstore import (
    Checkpoint,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    RecordedEvent,
    StreamAppend,
)
from service.application.errors import Conflict
from service.domain.events import Event
from service.gateway.port import Gateway
from service.records import decode, encode
from service.stream_cache import FoldedStates
from service.views import ReadModel

T = TypeVar("T")
S = TypeVar("S")

# A command decided again this many times, each time losing a race, answers 409 Conflict.
MAX_ATTEMPTS = 25
# Events read at a time when a decision catches its stream's cached state up.
TAIL_PAGE = 100


def latest(state: Event | None, event: Event) -> Event:
    """A fold for streams whose last event is their state (reservations, keys, accounts)."""
    return event


class Application:
    """What every command handler works with: the store, the gateway, the clock and settings,
    and the cache of folded stream states."""

    def __init__(
        self,
        store: EventStore,
        views: ReadModel,
        gateway: Gateway,
        *,
        clock: Callable[[], datetime],
        invoice_ttl: timedelta,
        idempotency_ttl: timedelta,
    ) -> None:
        self.store = store
        self.views = views
        self.gateway = gateway
        self.clock = clock
        self.invoice_ttl = invoice_ttl
        self.idempotency_ttl = idempotency_ttl
        self.folded = FoldedStates()

    async def load(
        self, stream_id: str, fold: Callable[[S | None, Event], S]
    ) -> tuple[S | None, int]:
        """The state of a stream and the version it was read at: the cached fold of the events
        already seen, and only the events after them read from the log."""
        state, version = self.folded.get(stream_id, fold)
        seen = version
        while True:
            tail = await self.store.stream_tail(stream_id, version, TAIL_PAGE)
            for recorded in tail:
                state = fold(state, decode(recorded))
                version = recorded.version
            if len(tail) < TAIL_PAGE:
                break
            await asyncio.sleep(0)  # a long uncached stream: let other requests in between pages
        if version > seen:
            self.folded.put(stream_id, fold, state, version)
        return state, version

    async def run(
        self,
        attempt: Callable[[Attempt], Awaitable[T]],
        *,
        checkpoint: Checkpoint | None = None,
    ) -> T:
        """Run ``attempt`` and append what it staged, all or nothing (with ``checkpoint``, if
        given, moved in the same commit); while it loses races, again from fresh state.

        A ``DuplicateEventError`` is a race too: a concurrent twin stored some of the same
        events first, and deciding again from the new state sees them."""
        for _ in range(MAX_ATTEMPTS):
            current = Attempt(self)
            try:
                result = await attempt(current)
                if current.appends or checkpoint is not None:
                    await self.store.append_streams(current.appends, checkpoint=checkpoint)
                return result
            except (ConcurrencyError, DuplicateEventError):
                continue
        raise Conflict()


class Attempt:
    """One try at a command: the version each stream was read at, and the events to append."""

    __slots__ = ("_app", "_versions", "appends")

    def __init__(self, app: Application) -> None:
        self._app = app
        self._versions: dict[str, int] = {}
        self.appends: list[StreamAppend] = []

    async def load(self, stream_id: str, fold: Callable[[S | None, Event], S]) -> S | None:
        """The stream's state (``Application.load``); its version is noted for the append."""
        state, self._versions[stream_id] = await self._app.load(stream_id, fold)
        return state

    async def last_events(self, stream_ids: Sequence[str]) -> dict[str, RecordedEvent]:
        """The last event of each stream that exists, in one read; every stream's version is
        noted (0 for one that does not exist)."""
        last = await self._app.store.last_events(stream_ids)
        for stream_id in stream_ids:
            held = last.get(stream_id)
            self._versions[stream_id] = held.version if held is not None else 0
        return last

    def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        metadata: dict[str, Any],
        *,
        expected: int | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> None:
        """Stage ``events`` for ``stream_id``, to be appended at the version the stream was
        read at (or ``expected``: ``NO_STREAM`` for a new stream, ``ANY`` for no check).
        No events, nothing staged: a decision that decided nothing appends nothing."""
        if not events:
            return
        if expected is None:
            if stream_id not in self._versions:
                raise ValueError(f"{stream_id!r} was not read: give its expected version")
            expected = self._versions[stream_id]
        if event_ids is None:
            records = [encode(event, metadata) for event in events]
        else:
            records = [encode(e, metadata, i) for e, i in zip(events, event_ids, strict=True)]
        self.appends.append(StreamAppend(stream_id, expected, records))
