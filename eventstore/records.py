"""What every backend shares: validating and encoding events, the time format, the hash chain.

Data and metadata are stored as canonical JSON text (sorted keys, no spaces), times as UTC text
with microseconds, and the hash covers that exact text, so ``verify()`` can recompute every hash
from the stored fields alone. A backend stores these values as they are and computes the chain
with :func:`chain_hash`, so every backend's log has the same hashes for the same events.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from eventstore.errors import (
    DuplicateEventError,
    InvalidEvent,
    InvalidStreamId,
    SerializationError,
)
from eventstore.model import NewEvent, RecordedEvent, StreamAppend
from eventstore.versions import ANY

GENESIS_HASH = "0" * 64
MAX_STREAM_ID_LENGTH = 255
MAX_NAME_LENGTH = 255

_SEPARATOR = "\x1f"  # a control character: no hashed field can contain it raw
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Dataclasses, datetimes and str/int/dict subclasses are refused rather than silently turned into
# something that reads back differently; keys must be strings.
_JSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)

EncodedEvent = tuple[str, str, str, str]  # (event_id, type, data JSON, metadata JSON)


class EncodedStream(NamedTuple):
    """A validated ``StreamAppend``: events already turned into JSON text by the caller."""

    stream_id: str
    expected_version: int
    events: Sequence[EncodedEvent]


def check_stream_id(stream_id: object) -> str:
    """Return ``stream_id`` if it can name a stream, else raise ``InvalidStreamId``."""
    if not isinstance(stream_id, str) or not stream_id:
        raise InvalidStreamId(f"stream id must be a non-empty string, got {stream_id!r}")
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise InvalidStreamId(f"stream id is longer than {MAX_STREAM_ID_LENGTH} characters")
    if _CONTROL_CHARACTERS.search(stream_id):
        raise InvalidStreamId(f"stream id {stream_id!r} contains control characters")
    return stream_id


def encode_appends(appends: Sequence[StreamAppend]) -> list[EncodedStream]:
    """Validate and serialise a multi-stream append on the caller's side, so a bad event never
    reaches the writer: each stream once, each event id once."""
    encoded = [encode_stream(a.stream_id, a.expected_version, a.events) for a in appends]
    if len({stream.stream_id for stream in encoded}) < len(encoded):
        raise ValueError("a stream appears twice in one append")
    event_ids = [event[0] for stream in encoded for event in stream.events]
    if len(set(event_ids)) < len(event_ids):
        raise DuplicateEventError("an event id appears twice in one append")
    return encoded


def encode_stream(
    stream_id: str, expected_version: int, events: Sequence[NewEvent]
) -> EncodedStream:
    """Validate and serialise one stream's part of an append."""
    check_stream_id(stream_id)
    if not isinstance(expected_version, int) or expected_version < ANY:
        raise ValueError(f"invalid expected version {expected_version!r}")
    if not events:
        raise ValueError(f"no events to append to stream {stream_id!r}")
    encoded = [encode_event(event) for event in events]
    if len(encoded) > 1 and len({event[0] for event in encoded}) < len(encoded):
        raise DuplicateEventError(f"an event id appears twice in the append to {stream_id!r}")
    return EncodedStream(stream_id, expected_version, encoded)


def encode_event(event: NewEvent) -> EncodedEvent:
    """Validate ``event`` and return ``(event_id, type, data_json, metadata_json)``."""
    if not isinstance(event, NewEvent):
        raise InvalidEvent(f"expected a NewEvent, got {type(event).__name__}")
    return (
        _check_name(event.event_id, "event id"),
        _check_name(event.type, "event type"),
        to_json(event.data, "data"),
        to_json(event.metadata, "metadata"),
    )


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidEvent(f"{what} must be a string of 1 to {MAX_NAME_LENGTH} characters")
    if _CONTROL_CHARACTERS.search(value):
        raise InvalidEvent(f"{what} {value!r} contains control characters")
    return value


def to_json(value: Mapping[str, Any], what: str) -> str:
    """Canonical JSON text of a JSON object; ``SerializationError`` for anything else."""
    if not isinstance(value, dict):
        raise InvalidEvent(f"event {what} must be a JSON object (dict), got {type(value).__name__}")
    try:
        text = orjson.dumps(value, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError as error:
        raise SerializationError(f"event {what} is not JSON-serialisable: {error}") from error
    # orjson writes NaN and infinities as null; JSON has no such numbers, so refuse them instead
    # of storing something else. Only payloads with a null can hide one.
    if b"null" in text and _has_non_finite_float(value):
        raise SerializationError(f"event {what} holds NaN or an infinity, which JSON cannot hold")
    return text.decode()


def _has_non_finite_float(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite_float(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite_float(item) for item in value)
    return False


def format_time(moment: datetime) -> str:
    """UTC text with microseconds and a four-digit year, so it sorts in time order."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place on the timeline; give it a timezone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def chain_hash(previous_hash: str, row_without_hash: tuple[Any, ...]) -> str:
    """SHA-256 over the previous hash and the row's fields, joined by a unit separator.

    The join is unambiguous: ids, stream ids and types are refused if they hold a control
    character, JSON text escapes them, and the other fields are numbers and timestamps. So a row
    whose fields differ from another's can never hash the same by moving a field boundary.
    """
    text = _SEPARATOR.join([previous_hash, *map(str, row_without_hash)])
    return hashlib.sha256(text.encode()).hexdigest()


def decode_row(row: tuple[Any, ...]) -> RecordedEvent:
    """A ``RecordedEvent`` from a row of its fields in their order (position, event id, stream,
    version, type, data, metadata, time, hash): the row itself, nothing decoded until read."""
    return RecordedEvent._make(row)


def decode_rows(rows: Iterable[Iterable[Any]]) -> list[RecordedEvent]:
    """``decode_row`` of each row, without a Python call per row (a replay makes one for every
    event of the log): each row becomes the event's tuple in C."""
    new = tuple.__new__
    return [new(RecordedEvent, row) for row in rows]
