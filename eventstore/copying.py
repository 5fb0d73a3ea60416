"""Copying a log as it is, from one store into another: what every backend checks first.

``EventStore.import_events`` takes events recorded elsewhere (another file, another backend) and
stores them unchanged: position, id, stream, version, type, data, metadata, time and hash. Nothing
is recomputed, so the copy proves itself: each event must follow the target's end exactly, and its
hash must be the chain hash of the event before it and its own fields, as ``records.chain_hash``
computes it on every backend. A copy that would break the chain is refused before anything is
written, so a half-copied target is always a clean prefix of its source and a copy can resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventstore.errors import ImportRefused
from eventstore.model import RecordedEvent
from eventstore.records import chain_hash


@dataclass(frozen=True, slots=True)
class LogEnd:
    """The last event of a log as a copy continues it (0, the genesis hash and "" when empty)."""

    position: int
    hash: str
    recorded_at_text: str


def check_continuation(end: LogEnd, events: Sequence[RecordedEvent]) -> LogEnd:
    """Raise ``ImportRefused`` unless ``events`` continue the log ending at ``end`` unchanged:
    positions one after another from ``end.position + 1``, times that never go back, and each
    hash chained from the one before. Returns the log's end after them."""
    position, hash_, time_text = end.position, end.hash, end.recorded_at_text
    for event in events:
        if event.position != position + 1:
            raise ImportRefused(
                f"the event at position {event.position} does not follow the log's end"
                f" (position {position})"
            )
        if event.recorded_at_text < time_text:
            raise ImportRefused(
                f"the event at position {event.position} was recorded before the one it follows"
            )
        if event.hash != chain_hash(hash_, tuple(event)[:-1]):
            raise ImportRefused(
                f"the hash of the event at position {event.position} does not chain from the"
                " event before it: the source does not verify"
            )
        position, hash_, time_text = event.position, event.hash, event.recorded_at_text
    return LogEnd(position, hash_, time_text)
