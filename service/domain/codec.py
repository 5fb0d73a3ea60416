"""Turning domain events into JSON objects for the log, and back.

Events are frozen dataclasses; this codec walks their type hints, so adding a field to an event
needs no hand-written converter. Times are stored as UTC ISO text with microseconds; nested
dataclasses and tuples of them become objects and arrays.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar, cast

T = TypeVar("T")


def to_data(value: Any) -> dict[str, Any]:
    """The JSON object for a dataclass instance."""
    return {field.name: _dump(getattr(value, field.name)) for field in dataclasses.fields(value)}


def from_data(cls: type[T], data: dict[str, Any]) -> T:
    """The dataclass instance for a JSON object written by ``to_data``."""
    hints = _hints(cast(type, cls))
    return cls(**{name: _load(hints[name], data[name]) for name in hints})


def format_time(moment: datetime) -> str:
    """UTC text with microseconds and a four-digit year, so it sorts in time order."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place on the timeline; give it a timezone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _dump(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_data(value)
    if isinstance(value, tuple | list):
        return [_dump(item) for item in value]
    return value


def _load(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _load(inner, value)
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        return tuple(_load(item_hint, item) for item in value)
    if hint is datetime:
        return parse_time(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_data(hint, value)
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if name in names}
