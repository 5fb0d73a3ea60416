"""The values that go into and come out of the store.

``NewEvent`` is what a caller appends; ``RecordedEvent`` is what the log holds once the event is
committed: the caller's fields plus the stream version, the global position, the commit time and
the hash that chains it to the event before it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from eventstore.entropy import random_bytes

JSONObject = dict[str, Any]


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so new ids land at the end of the event_id index
    instead of dirtying a random index page each, which would make every commit write more."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(random_bytes(10), "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62)
    digits = f"{value | (rand & ((1 << 62) - 1)):032x}"
    # The canonical 8-4-4-4-12 text, as str(uuid.UUID(...)) would write it, without the object.
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event not yet stored. ``event_id`` makes retries safe: storing it twice is a no-op."""

    type: str
    data: JSONObject
    metadata: JSONObject = field(default_factory=dict)
    event_id: str = field(default_factory=new_event_id)


class StoredEvent(NamedTuple):
    """An event's row in the log, field for field in the order of the hash input (the SQLite
    store's ``EVENT_COLUMNS``)."""

    position: int
    event_id: str
    stream_id: str
    version: int
    type: str
    data_json: str
    metadata_json: str
    recorded_at_text: str
    hash: str


class RecordedEvent(StoredEvent):
    """An event as the log holds it: its stored row, read as a tuple of the stored text.

    ``data``, ``metadata`` and ``recorded_at`` are decoded from that text when read, each time
    (so a caller may change what it gets without changing the event). A replay builds one of
    these for every event in the log and most projectors read only a few of its fields, so
    decoding them all up front would be most of a replay's cost; the JSON text itself can be
    decoded straight into a typed value (``data_json``).
    """

    __slots__ = ()

    @property
    def data(self) -> JSONObject:
        return orjson.loads(self.data_json)  # type: ignore[no-any-return]

    @property
    def metadata(self) -> JSONObject:
        return orjson.loads(self.metadata_json)  # type: ignore[no-any-return]

    @property
    def recorded_at(self) -> datetime:
        return datetime.fromisoformat(self.recorded_at_text)


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of an atomic multi-stream append."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Move subscriber ``name`` to ``position`` in the same transaction as an append.

    Checkpoints only move forward: a position at or before the stored one is refused with
    ``CheckpointConflict``, and then nothing of the transaction is written.
    """

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify()`` found: ``ok`` or the first position that does not match, and why."""

    ok: bool
    events_checked: int
    head_position: int
    first_bad_position: int | None = None
    reason: str | None = None
