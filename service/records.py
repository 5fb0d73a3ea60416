"""Domain events to the event store's records and back: the one place the two models meet.

The domain knows nothing of the store, and the store nothing of invoices: a domain event becomes
a ``NewEvent`` (its class name as the type, its fields as a JSON object) to append, and a
``RecordedEvent`` read back becomes the domain event again, built straight from the stored JSON
text by the codec's typed decoder.
"""

from __future__ import annotations

from typing import Any

from eventstore import NewEvent, RecordedEvent
from service.domain.codec import json_decoder, to_data
from service.domain.events import EVENT_TYPES, Event


def encode(event: Event, metadata: dict[str, Any], event_id: str | None = None) -> NewEvent:
    """The store's ``NewEvent`` for a domain event; a given ``event_id`` makes it idempotent."""
    if event_id is None:
        return NewEvent(type(event).__name__, to_data(event), metadata)
    return NewEvent(type(event).__name__, to_data(event), metadata, event_id)


_DECODERS = {name: json_decoder(cls) for name, cls in EVENT_TYPES.items()}


def decode(recorded: RecordedEvent) -> Event:
    """The domain event of a recorded one, built straight from its stored JSON text."""
    return _DECODERS[recorded.type].decode(recorded.data_json)  # type: ignore[no-any-return]
