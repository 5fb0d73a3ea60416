"""Loading request bodies and queries with marshmallow, quickly: the app's ``Loader``.

Two things make a load cheap, and both belong to the app (``keys.LOADER``), not to the module:

- one shared instance of each schema: a marshmallow schema keeps no state between loads, and
  building one deep-copies its fields (a fifth of a checkout's CPU);
- the queries loaded lately, by their text (4,096, LRU): a buyer waiting for a payment sends
  the same detail query again and again, and loading it was an eighth of a detail's time. A
  query's load depends on nothing but its text; a refused one raises every time
  (``lru_cache`` keeps no exceptions). Queries longer than ``MAX_REMEMBERED_QUERY`` characters
  are loaded each time rather than remembered (a URL may be 8 KB).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError

REMEMBERED_QUERIES = 4096
MAX_REMEMBERED_QUERY = 256

QueryItems = tuple[tuple[str, str], ...]
MAX_NAME_SHOWN = 100


def _repeated_name(query: Mapping[str, str]) -> str:
    seen: set[str] = set()
    for name, _ in query.items():  # a multidict gives an item per value, a key once
        if name in seen:
            return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "…"
        seen.add(name)
    return "_schema"  # not reached: only called when some name repeats


class Loader:
    """The schema instances and the remembered queries of one app."""

    def __init__(self, remembered_queries: int = REMEMBERED_QUERIES) -> None:
        self._schemas: dict[type[Schema], Schema] = {}
        self._loaded_query = functools.lru_cache(maxsize=remembered_queries)(self._load_items)

    def load(self, schema: type[Schema], data: Any) -> Any:
        """``data`` loaded by this app's one instance of ``schema``."""
        instance = self._schemas.get(schema)
        if instance is None:
            instance = self._schemas[schema] = schema()
        return instance.load(data)

    def load_query(self, schema: type[Schema], query: Mapping[str, str]) -> dict[str, Any]:
        """``query`` (a request's) loaded by ``schema``, remembered; a name given twice is
        refused, as a repeated JSON key is (``body.py``): which one counts is not ours to guess."""
        items = tuple(dict(query).items())
        if len(items) != len(query):  # a multidict counts every value of a name
            raise ValidationError({_repeated_name(query): ["Given more than once."]})
        if sum(len(name) + len(value) for name, value in items) > MAX_REMEMBERED_QUERY:
            return self._load_items(schema, items)
        # A copy: the remembered answer is shared by every request that sends this query.
        return dict(self._loaded_query(schema, items))

    def _load_items(self, schema: type[Schema], items: QueryItems) -> dict[str, Any]:
        loaded: dict[str, Any] = self.load(schema, dict(items))
        return loaded
