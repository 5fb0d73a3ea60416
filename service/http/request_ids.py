"""Request ids: 32 hex digits, a random half drawn once per app and a counter.

Unique, as a ``uuid4`` per request was, without a system call for 16 random bytes in every
request. The counter belongs to the app (``keys.REQUEST_IDS``), not to the module: two apps in
one process (tests) each draw their own random half, so their ids never meet.
"""

from __future__ import annotations

import itertools
import secrets


class RequestIds:
    """The ids of one app's requests."""

    __slots__ = ("_counter", "_random_half")

    def __init__(self) -> None:
        self._random_half = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def new(self) -> str:
        return f"{self._random_half}{next(self._counter):016x}"
