"""The text of an invoice's state as the invoice view stores it, and back.

The view row holds the aggregate's own state (``service.domain.invoice.Invoice``) as JSON text
with sorted keys; a replay must write the very same text, so one encoder is used by every
backend, and reading it back gives an equal state.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import orjson

from service.domain.codec import from_data, to_data
from service.domain.invoice import Invoice

# msgspec writes a state's JSON text as ``to_data`` and orjson do (keys sorted, the same
# escapes), in a third of the time, except for a time: it leaves out microseconds that are zero,
# and writes an offset other than UTC's as it is. So a state takes this path only when each of
# its times is UTC with microseconds (all but about one in a million from a real clock), and the
# text is the same either way: views written before stay equal to a replay.
_STATE_ENCODER = msgspec.json.Encoder(order="sorted")


def encode_state(state: Invoice) -> str:
    created_at, expired_at, updated_at = state_times(state)
    if (
        created_at.microsecond
        and expired_at.microsecond
        and updated_at.microsecond
        and created_at.tzinfo is expired_at.tzinfo is updated_at.tzinfo is UTC
    ):
        return _STATE_ENCODER.encode(state).decode()
    return orjson.dumps(to_data(state), option=orjson.OPT_SORT_KEYS).decode()


def state_times(state: Invoice) -> tuple[datetime, datetime, datetime]:
    """Every time an invoice's state holds (a unit test holds this to ``Invoice``'s fields)."""
    return (state.created.created_at, state.created.expired_at, state.updated_at)


def decode_state(text: str) -> Invoice:
    return from_data(Invoice, orjson.loads(text))
