"""What each app keeps for speed on the request path: request ids and formatted times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from service.http.request_ids import RequestIds
from service.presenters import api_time, remembered_api_time


def test_request_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = RequestIds()
    made = [ids.new() for _ in range(1000)]

    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in made)
    assert len(set(made)) == 1000


def test_two_apps_draw_their_own_random_half() -> None:
    first, second = RequestIds(), RequestIds()

    assert first.new()[:16] != second.new()[:16]


def test_a_remembered_time_reads_as_api_time_does() -> None:
    times = remembered_api_time()
    moments = [
        datetime(2024, 1, 31, 12, 5, 44, 155_999, tzinfo=UTC),
        datetime(2024, 1, 31, 19, 5, 44, tzinfo=timezone(timedelta(hours=7))),
    ]

    for moment in moments * 2:
        assert times(moment) == api_time(moment)
    assert times(moments[0]) == "2024-01-31T12:05:44.155Z"
    assert times(moments[1]) == "2024-01-31T12:05:44.000Z"


def test_each_app_remembers_its_own_times() -> None:
    assert remembered_api_time() is not remembered_api_time()
