"""The field types and the strict schema every request schema is built from.

Requests refuse unknown fields, and money is a strict integer: booleans, floats, numeric strings
and negatives are refused, and no amount may exceed 10^12. Each rule is a validator that both
refuses bad input and documents itself in the OpenAPI document.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

MAX_AMOUNT = 10**12


class FullMatch(validate.Regexp):
    """A ``Regexp`` that must match the whole value.

    ``re.match`` with ``$`` accepts a value that ends in a newline ("abc\\n"), which a JSON
    Schema ``pattern`` (ECMA-262) does not: the whole value must match here, as documented.
    """

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# Here, not in ``webhooks``, since the operator page's query names one too.
WEBHOOK_MESSAGE_ID = FullMatch(r"^msg_[0-9a-f]{32}$", error="Not a webhook message id.")


# A list, not validate.And, so that the OpenAPI generator sees each rule.
NAME = (
    validate.Length(min=1, max=100),
    FullMatch(r"^[\x20-\x7e]+$", error="Must be printable ASCII text."),
)


def in_utc_range(moment: datetime) -> None:
    """A time must also exist in UTC (0001-01-01 +01:00 does not)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError("Out of the range of representable times.") from None


class Money(fields.Field[int]):
    """An amount in the smallest unit (IDR): an integer from 0 to 10^12, nothing else."""

    default_error_messages = {  # noqa: RUF012 - marshmallow's own convention
        "invalid": "Must be an integer amount, not a boolean, float or string.",
        "range": f"Must be between 0 and {MAX_AMOUNT}.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        if not 0 <= value <= MAX_AMOUNT:
            raise self.make_error("range")
        return value

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


# A refusal names at most this many unknown fields, each cut to a readable length: an answer
# must not grow with what an abusive body sends (80,000 unknown fields answered 2.2 MB).
MAX_NAMED_UNKNOWN = 20
MAX_NAME_SHOWN = 100


class StrictSchema(Schema):
    """Unknown fields are refused, by name."""

    class Meta:
        unknown = RAISE

    @pre_load
    def refuse_many_unknown_fields(self, data: Any, **kwargs: Any) -> Any:
        """A few unknown fields are named with the body's other errors; many, or a very long
        name, end the load at once with a sample of them."""
        if not isinstance(data, dict):
            return data  # marshmallow names the wrong type
        if len(data) <= MAX_NAMED_UNKNOWN and all(len(key) <= MAX_NAME_SHOWN for key in data):
            return data  # few and short: marshmallow names them with the other errors
        known = {field.data_key or name for name, field in self.load_fields.items()}
        unknown = [key for key in data if key not in known]
        if len(unknown) <= MAX_NAMED_UNKNOWN and all(len(key) <= MAX_NAME_SHOWN for key in unknown):
            return data
        errors: dict[str, list[str]] = {
            _shown(key): ["Unknown field."] for key in unknown[:MAX_NAMED_UNKNOWN]
        }
        if len(unknown) > MAX_NAMED_UNKNOWN:
            errors["_schema"] = [f"{len(unknown)} unknown fields; the first are named."]
        raise ValidationError(errors)


def _shown(name: str) -> str:
    return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "…"


class QueryInteger(fields.Integer):
    """An integer written in a query string: ASCII digits, with a ``-`` for a negative number.

    ``int()`` (and so ``fields.Integer``) also reads "٣", "１", "+5", " 5" and "5_0"; a proxy,
    a cache or a log reader may read those differently or not at all, so they are refused.
    """

    default_error_messages = {  # noqa: RUF012 - marshmallow's own convention
        "invalid": "Not a valid integer: ASCII digits 0-9 only.",
    }

    _DIGITS = re.compile(r"-?[0-9]+")

    def _validated(self, value: Any) -> int:
        if not isinstance(value, str) or self._DIGITS.fullmatch(value) is None:
            raise self.make_error("invalid")
        return super()._validated(value)


def refuse_long_list(data: Any, name: str, most: int) -> Any:
    """``data`` as it is, unless its list ``name`` holds more than ``most`` items: refused by
    its length before any item is loaded (the same message the field's own length check
    gives)."""
    items = data.get(name) if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > most:
        raise ValidationError(f"Length must be between 1 and {most}; got {len(items)}.", name)
    return data


def doc(description: str) -> dict[str, Any]:
    return {"description": description}
