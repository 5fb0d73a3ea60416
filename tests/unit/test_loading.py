"""The app's loader: one schema instance each, queries remembered by their text, per app."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from marshmallow import Schema, ValidationError, fields, post_load, validate

from service.http.loading import MAX_REMEMBERED_QUERY, Loader


class Counted(Schema):
    """A query schema that counts its loads and its instances."""

    made: ClassVar[int] = 0
    loaded: ClassVar[int] = 0

    name = fields.String(required=True, validate=validate.Length(max=500))
    limit = fields.Integer(load_default=10)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        Counted.made += 1

    @post_load
    def count(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        Counted.loaded += 1
        return data


@pytest.fixture(autouse=True)
def _reset() -> None:
    Counted.made = Counted.loaded = 0


def test_a_loader_builds_one_instance_of_each_schema() -> None:
    loader = Loader()
    for _ in range(3):
        assert loader.load(Counted, {"name": "a"}) == {"name": "a", "limit": 10}

    assert Counted.made == 1


def test_two_loaders_share_nothing() -> None:
    first, second = Loader(), Loader()
    first.load_query(Counted, {"name": "a"})
    second.load_query(Counted, {"name": "a"})

    assert (Counted.made, Counted.loaded) == (2, 2)


def test_a_query_seen_before_is_answered_without_loading_it_again() -> None:
    loader = Loader()
    first = loader.load_query(Counted, {"name": "a", "limit": "5"})
    first["name"] = "changed by a handler"
    second = loader.load_query(Counted, {"name": "a", "limit": "5"})
    other = loader.load_query(Counted, {"name": "b", "limit": "5"})

    assert second == {"name": "a", "limit": 5}  # a copy: the remembered answer is intact
    assert other == {"name": "b", "limit": 5}
    assert Counted.loaded == 2


def test_a_refused_query_is_refused_every_time() -> None:
    loader = Loader()
    for _ in range(2):
        with pytest.raises(ValidationError):
            loader.load_query(Counted, {"name": "a", "limit": "x"})


def test_a_long_query_is_loaded_every_time_rather_than_remembered() -> None:
    loader = Loader()
    query = {"name": "n" * MAX_REMEMBERED_QUERY}
    for _ in range(2):
        assert loader.load_query(Counted, query)["name"] == query["name"]

    assert Counted.loaded == 2


def test_only_the_latest_queries_are_remembered() -> None:
    loader = Loader(remembered_queries=2)
    for name in ("a", "b", "c", "a"):
        loader.load_query(Counted, {"name": name})

    assert Counted.loaded == 4  # "a" had been forgotten when it came back
