"""The invoice view's state text: whichever path writes it, the text is the one ``to_data`` and
orjson have always written (keys sorted, every time in UTC with six digits of microseconds), so
views written by earlier code stay equal to a replay by this code.

``encode_state`` hands most states to msgspec, which writes the same text faster but would drop
zero microseconds and keep another zone's offset; ``state_times`` tells it which times to check,
and the first test fails if ``Invoice`` ever holds a time that ``state_times`` does not name.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime, timedelta, timezone

import hypothesis
import orjson
from hypothesis import strategies as st

from service.domain.codec import to_data
from service.domain.events import InvoiceCreated, TransactionLine
from service.domain.invoice import Invoice, Transaction, evolve
from service.views.invoice_state import decode_state, encode_state, state_times


def earlier_text(state: Invoice) -> str:
    """The state's text as the invoice view has always written it."""
    return orjson.dumps(to_data(state), option=orjson.OPT_SORT_KEYS).decode()


def time_paths(cls: type, prefix: str = "") -> set[str]:
    """The dotted paths of every datetime field reachable from dataclass ``cls``."""
    paths: set[str] = set()
    for name, hint in typing.get_type_hints(cls).items():
        if name not in {field.name for field in dataclasses.fields(cls)}:
            continue
        inner = [hint, *typing.get_args(hint)]
        if datetime in inner:
            paths.add(prefix + name)
        for part in inner:
            if isinstance(part, type) and dataclasses.is_dataclass(part):
                paths |= time_paths(part, f"{prefix}{name}.")
    return paths


def test_state_times_names_every_time_an_invoice_holds() -> None:
    assert time_paths(Invoice) == {"created.created_at", "created.expired_at", "updated_at"}
    state = evolve(None, created(datetime(2026, 1, 1, 8, 0, 0, 1, tzinfo=UTC), ("a",)))
    assert state_times(state) == (
        state.created.created_at,
        state.created.expired_at,
        state.updated_at,
    )


def created(at: datetime, names: tuple[str, ...], text: str = "x") -> InvoiceCreated:
    lines = tuple(
        TransactionLine(name, f"seller-{text}", 1000 * (i + 1), 500, 0, 100, None)
        for i, name in enumerate(names)
    )
    return InvoiceCreated(
        f"OM{text}",
        f"buyer-{text}",
        "ONMARKET",
        "XENDIT",
        sum(line.total for line in lines),
        lines,
        "ref",
        None,
        text,
        at,
        at + timedelta(hours=2),
    )


def test_a_time_with_microseconds_and_one_on_a_whole_second_give_the_earlier_text() -> None:
    for at in (
        datetime(2026, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),  # msgspec's path
        datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC),  # the other path
        datetime(2026, 1, 1, 15, 0, 0, 5, tzinfo=timezone(timedelta(hours=7))),  # the other
    ):
        state = evolve(None, created(at, ("INV/1", "INV/2")))
        assert encode_state(state) == earlier_text(state)
        assert '"created_at":"2026-01-01T08:00:00.' in encode_state(state)


zones = st.sampled_from([UTC, timezone(timedelta(hours=7)), timezone(timedelta(minutes=-90))])
moments = st.builds(
    lambda moment, zone, whole: (moment.replace(microsecond=0) if whole else moment).replace(
        tzinfo=zone
    ),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9000, 1, 1)),
    zones,
    st.booleans(),
)


@hypothesis.given(
    at=moments,
    later=moments,
    names=st.lists(st.text(min_size=1), min_size=1, max_size=3, unique=True),
    text=st.text(),
    payments=st.lists(st.text(), max_size=3),
    status=st.sampled_from(["PENDING", "PAID", "COMPLETED"]),
)
def test_any_state_is_written_as_the_earlier_text_and_reads_back_equal(
    at: datetime,
    later: datetime,
    names: list[str],
    text: str,
    payments: list[str],
    status: str,
) -> None:
    first = evolve(None, created(at, tuple(names), text))
    transactions = tuple(Transaction(t.line, status) for t in first.transactions)
    state = Invoice(first.created, status, transactions, tuple(payments), later)
    written = encode_state(state)
    assert written == earlier_text(state)
    assert decode_state(written) == state  # aware times compare as instants
