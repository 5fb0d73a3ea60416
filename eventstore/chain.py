"""Walking the hash chain: what every backend's ``verify`` checks, page by page.

A backend reads its log in position order, in pages, and hands each page to one
:class:`ChainWalk`; the walk stops at the first position that is missing or whose hash does not
match the event's content and the hash before it, and says so in a ``VerifyReport``. The guards
a backend keeps in its database (triggers) are its own to look for; the walk only reports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eventstore.model import VerifyReport
from eventstore.records import GENESIS_HASH, chain_hash


class ChainWalk:
    """The chain from the first event up to the last page checked."""

    def __init__(self) -> None:
        self.position = 0
        self._hash = GENESIS_HASH
        self._checked = 0

    def check(self, rows: Iterable[Sequence[Any]]) -> VerifyReport | None:
        """Check the next page of rows (fields in ``StoredEvent``'s order, the hash last): the
        report of the first break in it, or None if the chain holds."""
        for row in rows:
            if row[0] != self.position + 1:
                return self._broken(
                    row[0], self.position + 1, f"position {self.position + 1} is missing"
                )
            self._hash = chain_hash(self._hash, tuple(row[:-1]))
            if row[-1] != self._hash:
                return self._broken(row[0], row[0], "hash does not match the event's content")
            self.position, self._checked = row[0], self._checked + 1
        return None

    def finish(self, missing_guards: Sequence[str]) -> VerifyReport:
        """The report once every page held: not ok if a guard of the log is missing."""
        if missing_guards:
            return VerifyReport(
                ok=False,
                events_checked=self._checked,
                head_position=self.position,
                reason=f"guard trigger(s) missing or disabled: {', '.join(missing_guards)}",
            )
        return VerifyReport(ok=True, events_checked=self._checked, head_position=self.position)

    def _broken(self, head: int, bad_position: int, reason: str) -> VerifyReport:
        return VerifyReport(
            ok=False,
            events_checked=self._checked,
            head_position=head,
            first_bad_position=bad_position,
            reason=reason,
        )
