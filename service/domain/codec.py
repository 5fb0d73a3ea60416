"""Turning domain events into JSON objects for the log, and back.

Events are frozen dataclasses; this codec reads their type hints, so adding a field to an event
needs no hand-written converter. Times are stored as UTC ISO text with microseconds; nested
dataclasses and tuples of them become objects and arrays.

Encoding walks the hints, worked out once per class and cached. Decoding is msgspec's
``convert`` (or, from JSON text, its typed JSON decoder), which reads the same hints in C: a
replay decodes every event of the log, and msgspec builds an invoice's creation event straight
from its stored text in less time than parsing that text into a dict takes.
A field missing from older data takes its default (events gain fields over time); a value of the
wrong type is refused with ``msgspec.ValidationError`` rather than built into a wrong event.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar, cast

import msgspec

T = TypeVar("T")
Convert = Callable[[Any], Any]


def to_data(value: Any) -> dict[str, Any]:
    """The JSON object for a dataclass instance."""
    return _encoder(cast(type, type(value)))(value)  # type: ignore[no-any-return]


def from_data(cls: type[T], data: dict[str, Any]) -> T:
    """The dataclass instance for a JSON object written by ``to_data``."""
    return msgspec.convert(data, cls)


def json_decoder(cls: type[T]) -> msgspec.json.Decoder[T]:
    """A decoder of ``cls`` from the JSON text of an object written by ``to_data``:
    ``decoder.decode(text)`` gives what ``from_data`` gives for the parsed text, built straight
    from the text."""
    return _decoder(cast(type, cls))


def format_time(moment: datetime) -> str:
    """UTC text with microseconds and a four-digit year, so it sorts in time order.

    The service's one way to write a time. The log writes its ``recorded_at`` with its own
    function of the same text (``eventstore.records.format_time``: the domain imports nothing
    from the store), and a test holds the two to the same text."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place on the timeline; give it a timezone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@cache
def _decoder(cls: type) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(cls)


@cache
def _encoder(cls: type) -> Convert:
    fields = [(name, _dumper(hint)) for name, hint in _hints(cls).items()]
    plain = [name for name, dump in fields if dump is None]
    converted = [(name, dump) for name, dump in fields if dump is not None]

    def encode(value: Any) -> dict[str, Any]:
        data = {name: getattr(value, name) for name in plain}
        for name, dump in converted:
            data[name] = dump(getattr(value, name))
        return data

    return encode


def _dumper(hint: Any) -> Convert | None:
    """How to turn a field of this type into JSON; None when it already is JSON."""
    inner = _optional(hint)
    if inner is not None:
        dump = _dumper(inner)
        return None if dump is None else (lambda value: None if value is None else dump(value))
    if typing.get_origin(hint) is tuple:
        item = _dumper(typing.get_args(hint)[0])
        return list if item is None else (lambda values: [item(value) for value in values])
    if hint is datetime:
        return format_time
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _encoder(hint)
    return None


def _optional(hint: Any) -> Any | None:
    """X for ``X | None``; None for anything else."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _hints(cls: type) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if name in names}
