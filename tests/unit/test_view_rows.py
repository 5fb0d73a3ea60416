"""The rows every backend's views are built from (``service.views.rows``): the ledger view skips
undecoded only event types that post nothing, and decodes every type that may."""

from __future__ import annotations

import hypothesis

from service.domain.events import Event, UserDisabled, UserEnabled
from service.domain.ledger import postings
from service.domain.webhook_events import WEBHOOK_EVENT_TYPES
from service.views.rows import MONEY_EVENTS, NO_POSTINGS
from tests.unit.test_codec import SAMPLES
from tests.unit.test_ledger import AT, BUYER, NON_MONEY_EVENTS, money_events

EXAMPLES = {
    type(event).__name__: event
    for event in [
        *NON_MONEY_EVENTS,
        UserDisabled(BUYER, "admin", AT),
        UserEnabled(BUYER, "admin", AT),
        *(event for event in SAMPLES if type(event).__name__ in WEBHOOK_EVENT_TYPES),
    ]
}


def test_every_type_the_ledger_skips_posts_nothing() -> None:
    """An example of each skipped type, and the domain posts none of them."""
    assert EXAMPLES.keys() >= NO_POSTINGS
    assert {name: postings(EXAMPLES[name]) for name in NO_POSTINGS} == {
        name: [] for name in NO_POSTINGS
    }


@hypothesis.given(money_events)
def test_every_event_that_posts_is_read_by_the_ledger(event: Event) -> None:
    """Whatever moves money, the ledger view decodes and posts (no type of it is skipped)."""
    hypothesis.assume(postings(event) != [])
    assert type(event).__name__ in MONEY_EVENTS
