"""The one way a command is carried out: load the streams its decision needs, let the pure
domain decide, append what it decided with the versions the streams were read at, and decide
again from fresh state when a race was lost.

A handler writes only its own steps, as an ``attempt`` that reads through an ``Attempt`` (which
notes each stream's version) and stages events on it; ``Application.run`` does the rest. If any
stream moved between the read and the append, the store refuses the whole append with
``ConcurrencyError`` and ``run`` calls the attempt again, so two racing commands can never both
act on the same old state. The retry policy lives here and nowhere else.

Within one process, commands on the same stream take turns (``serialise``): an attempt holds
the lock of every stream it reads until its append is committed, so it decides on fresh state
and does not lose its race to a neighbour. A lost race then means a writer in another process;
it is retried after a jittered, growing pause until ``conflict_timeout`` has passed, then
answered ``Conflict`` (409). A ``patient`` command (a gateway's callback, a worker's step) has
no such deadline: refusing it would leave real money unrecorded until somebody retries, and
optimistic retries always make progress (a lost race means another writer won).

An append whose event ids were all stored already by another command (a twin callback in
another process) is taken by the store as a retry and returns the stored events; for events
staged ``once`` that counts as a lost race too, so the decision is made again and sees them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from eventstore import (
    Checkpoint,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    RecordedEvent,
    StreamAppend,
)
from service.application.errors import Conflict
from service.application.serialise import Held, OutOfOrder, StreamLocks
from service.domain.events import Event
from service.gateway.port import Gateway
from service.records import decode, encode
from service.stream_cache import FoldedStates
from service.views import ReadModel

T = TypeVar("T")
S = TypeVar("S")

# How long a command goes on deciding again while it loses races to other processes (then 409).
CONFLICT_TIMEOUT = timedelta(seconds=5)
# The pause after the first lost race (seconds); it doubles with each loss, up to the cap, and
# a random part of it is slept (full jitter), so rivals that collided do not collide again.
FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.1
# Events read at a time when a decision catches its stream's cached state up.
TAIL_PAGE = 100


class Outcomes(Protocol):
    """Told what commands did, for counting (the metrics): the events each successful append
    committed, with the state each stream was read at before them (``read``: an outcome such
    as an invoice settling depends on it), and each request answered from a remembered
    answer."""

    def committed(self, appends: Sequence[StreamAppend], read: Mapping[str, Any]) -> None: ...

    def replayed(self) -> None: ...


class NoOutcomes:
    """Nobody counts (the CLI, tests of the application alone)."""

    def committed(self, appends: Sequence[StreamAppend], read: Mapping[str, Any]) -> None:
        pass

    def replayed(self) -> None:
        pass


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
        conflict_timeout: timedelta = CONFLICT_TIMEOUT,
        outcomes: Outcomes | None = None,
    ) -> None:
        self.store = store
        self.views = views
        self.gateway = gateway
        self.clock = clock
        self.invoice_ttl = invoice_ttl
        self.idempotency_ttl = idempotency_ttl
        self.conflict_timeout = conflict_timeout
        self.outcomes = outcomes if outcomes is not None else NoOutcomes()
        self.folded = FoldedStates()
        self.locks = StreamLocks()
        self._jitter = random.Random()

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
        streams: Sequence[str] = (),
        patient: bool = False,
    ) -> T:
        """Run ``attempt`` and append what it staged, all or nothing (with ``checkpoint``, if
        given, moved in the same commit); while it loses races, again from fresh state.

        ``streams`` are locked before the first try (those the command knows it will read, so
        it need not start again to take them in order). A ``patient`` command is retried
        until it wins; any other answers ``Conflict`` once ``conflict_timeout`` has passed.

        A ``DuplicateEventError`` is a race too: a concurrent twin stored some of the same
        events first, and deciding again from the new state sees them."""
        loop = asyncio.get_running_loop()
        deadline = None if patient else loop.time() + self.conflict_timeout.total_seconds()
        needed, losses = list(streams), 0
        while True:
            current = Attempt(self, Held(self.locks))
            try:
                await current.held.take_all(needed)
                result = await attempt(current)
                if current.appends or checkpoint is not None:
                    stored = await self.store.append_streams(current.appends, checkpoint=checkpoint)
                    if current.twin_won(stored):
                        raise _TwinWon()
                    self.outcomes.committed(current.appends, current.read)
                return result
            except OutOfOrder as out:
                # Not a lost race: start again at once, taking the locks in order.
                needed = [*current.held.streams, out.stream_id]
                continue
            except (ConcurrencyError, DuplicateEventError, _TwinWon):
                needed = current.held.streams
            finally:
                current.held.release()
            losses += 1
            pause = self._jitter.uniform(0, min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** min(losses, 16)))
            if deadline is not None and loop.time() + pause > deadline:
                raise Conflict()
            await asyncio.sleep(pause)


class _TwinWon(Exception):
    """Events staged ``once`` were found stored by another command."""


class Attempt:
    """One try at a command: the version each stream was read at (and, for those it loaded,
    the state: ``read``), and the events to append."""

    __slots__ = ("_app", "_once", "_versions", "appends", "held", "read")

    def __init__(self, app: Application, held: Held) -> None:
        self._app = app
        self._versions: dict[str, int] = {}
        self.read: dict[str, Any] = {}
        self._once: list[int] = []  # the indexes of the appends staged ``once``
        self.appends: list[StreamAppend] = []
        self.held = held

    async def load(self, stream_id: str, fold: Callable[[S | None, Event], S]) -> S | None:
        """The stream's state (``Application.load``), read holding its lock; its version is
        noted for the append."""
        await self.held.take(stream_id)
        state, self._versions[stream_id] = await self._app.load(stream_id, fold)
        self.read[stream_id] = state
        return state

    async def last_events(self, stream_ids: Sequence[str]) -> dict[str, RecordedEvent]:
        """The last event of each stream that exists, in one read; every stream's version is
        noted (0 for one that does not exist)."""
        await self.held.take_all(stream_ids)
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
        once: bool = False,
    ) -> None:
        """Stage ``events`` for ``stream_id``, to be appended at the version the stream was
        read at (or ``expected``: ``NO_STREAM`` for a new stream, ``ANY`` for no check).
        No events, nothing staged: a decision that decided nothing appends nothing.

        ``once`` (with ``event_ids``): these events record something that happens once, so
        finding them stored by another command (other metadata: another request) is a lost
        race, not a retry of this one."""
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
        if once:
            self._once.append(len(self.appends))
        self.appends.append(StreamAppend(stream_id, expected, records))

    def twin_won(self, stored: Sequence[Sequence[RecordedEvent]]) -> bool:
        """Whether events staged ``once`` came back as another command's (its metadata)."""
        for index in self._once:
            staged, recorded = self.appends[index].events, stored[index]
            if any(s.metadata != r.metadata for s, r in zip(staged, recorded, strict=True)):
                return True
        return False
