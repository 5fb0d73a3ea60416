"""The rows the service's views hold, computed from events the same way on every backend.

Each backend's projectors (``service.views.sqlite``, ``service.views.postgresql``) read and
write their own tables with their own SQL; which rows an event makes is decided here, once: an
invoice's folded state and status history, a ledger line, an account. So the views of two
backends cannot drift apart, and a log replayed on either gives the same answers. Times go
into rows as the text ``format_time`` writes (the log's own text for a commit time); a backend
that keeps times in a time type converts that text in its SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from eventstore import EventSelection, RecordedEvent
from service.domain.codec import format_time
from service.domain.events import (
    EVENT_TYPES,
    Event,
    InvoiceCreated,
    UserDisabled,
    UserEnabled,
    UserRegistered,
)
from service.domain.invoice import Invoice, evolve
from service.domain.ledger import postings
from service.domain.streams import INVOICE_STREAM_PREFIX
from service.domain.webhook_events import WEBHOOK_EVENT_TYPES
from service.records import decode
from service.views.invoice_state import decode_state, encode_state
from service.views.status_history import (
    StatusHistory,
    decode_history,
    encode_history,
    record_change,
)

Decoded = tuple[RecordedEvent, Event]
InvoiceEvent = tuple[str, RecordedEvent, Event]  # (invoice, recorded, event) of an invoice stream

# (seq, invoice, username, service, status, expired_at, gateway_reference, state,
#  status_history, version, position): a new row of invoice_view.
NewInvoice = tuple[int, str, str, str, str, str, str, str, str, int, int]
# (status, state, status_history, version, position, invoice): a changed row of invoice_view.
ChangedInvoice = tuple[str, str, str | None, int, int, str]
Waybill = tuple[str, int]  # (waybill_number, seq): a row of invoice_waybills

USER_EVENTS = frozenset({"UserRegistered", "UserDisabled", "UserEnabled"})
# (username, role, platform, password_hash, registered_at): a new row of users.
NewUser = tuple[str, str, str | None, str, str]
UserChange = tuple[Literal["register"], NewUser] | tuple[Literal["enable"], tuple[bool, str]]

# Event types that post nothing to the ledger (``service.domain.ledger.postings``: a refund's,
# a late or mismatched payment's money is posted by the balance event appended with it). The
# ledger skips them undecoded and asks ``postings`` about every other type, so a new event that
# moves money is posted as the domain says with no list here to keep in step; a new one that
# does not is only decoded for nothing until it is named here (tests/unit/test_view_rows.py).
NO_POSTINGS = frozenset(
    {
        "InvoiceCreated",
        "InvoiceExpired",
        "InvoiceCanceled",
        "RefundRequested",
        "RefundCompleted",
        "LatePaymentReceived",
        "MismatchedPaymentReceived",
        "OnmarketInvoiceReserved",
        "IdempotentRequestRecorded",
        "UserRegistered",
        "UserDisabled",
        "UserEnabled",
    }
) | frozenset(WEBHOOK_EVENT_TYPES)
MONEY_EVENTS = frozenset(EVENT_TYPES) - NO_POSTINGS
# (position, line, account, amount, event_type, invoice, recorded_at): a row of ledger_entries.
Entry = tuple[int, int, str, int, str, str | None, str]


# What each backend's projectors read (their ``reads``): a rebuild reads only these events.
INVOICE_AND_USER_READS = EventSelection(types=USER_EVENTS, stream_prefixes=(INVOICE_STREAM_PREFIX,))
LEDGER_READS = EventSelection(types=MONEY_EVENTS)


def invoice_and_user_events(
    events: Sequence[RecordedEvent],
) -> tuple[list[InvoiceEvent], list[Decoded]]:
    """The events of invoice streams and the account events among ``events``, decoded: only
    what the invoice and users views read (reservations, balances and idempotency records are
    skipped undecoded)."""
    invoices: list[InvoiceEvent] = []
    users: list[Decoded] = []
    for recorded in events:
        if recorded.stream_id.startswith(INVOICE_STREAM_PREFIX):
            invoices.append(invoice_event(recorded))
        elif recorded.type in USER_EVENTS:
            users.append((recorded, decode(recorded)))
    return invoices, users


def invoice_event(recorded: RecordedEvent) -> InvoiceEvent:
    """An event of an invoice stream as ``InvoiceFold`` takes it: its invoice, the recorded
    event and the domain event."""
    return recorded.stream_id[len(INVOICE_STREAM_PREFIX) :], recorded, decode(recorded)


@dataclass(slots=True)
class InvoiceFold:
    """Events of invoice streams folded into each invoice's state, reading and writing each
    invoice once (a live append brings a few events; a rebuild, a page of them).

    The backend loads the stored rows of ``earlier`` (``load``), calls ``fold``, and writes
    ``new_rows`` (numbered after its highest ``seq``) and ``changed_rows``."""

    events: Sequence[InvoiceEvent]
    created: dict[str, None] = field(default_factory=dict)  # new invoices, in creation order
    earlier: set[str] = field(default_factory=set)  # invoices created before: rows in the view
    last: dict[str, RecordedEvent] = field(default_factory=dict)
    states: dict[str, Invoice] = field(default_factory=dict)
    histories: dict[str, StatusHistory] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for invoice, recorded, event in self.events:
            if type(event) is InvoiceCreated:
                self.created[invoice] = None
            elif invoice not in self.created:
                self.earlier.add(invoice)
            self.last[invoice] = recorded

    def load(self, invoice: str, state: str, history: str | None) -> None:
        """An earlier invoice's stored state and status history (None in an old SQLite row)."""
        self.states[invoice] = decode_state(state)
        if history is not None:
            self.histories[invoice] = decode_history(history)

    def fold(self) -> None:
        for invoice, recorded, event in self.events:
            before = self.states.get(invoice)
            self.states[invoice] = after = evolve(before, event)
            history = self.histories.get(invoice)
            if history is not None or before is None:  # NULL in an old row: left for a rebuild
                history = self.histories.setdefault(invoice, [])
                record_change(history, before, after, recorded)

    def new_rows(self, last_seq: int) -> tuple[list[NewInvoice], list[Waybill]]:
        """The new invoices' rows in creation order, numbered from ``last_seq + 1`` as the
        view's highest ``seq`` plus one, so a replay gives every invoice the same ``seq``; and
        the waybills they ship under."""
        rows: list[NewInvoice] = []
        waybills: list[Waybill] = []
        for seq, invoice in enumerate(self.created, start=last_seq + 1):
            state, last = self.states[invoice], self.last[invoice]
            created = state.created
            rows.append(
                (
                    seq,
                    created.invoice,
                    created.username,
                    created.service,
                    state.status,
                    format_time(created.expired_at),
                    created.gateway_reference,
                    encode_state(state),
                    encode_history(self.histories[invoice]),
                    last.version,
                    last.position,
                )
            )
            numbers = {line.waybill_number for line in created.transactions if line.waybill_number}
            waybills += [(number, seq) for number in sorted(numbers)]
        return rows, waybills

    def changed_rows(self) -> list[ChangedInvoice]:
        """The earlier invoices' new status, state, history, version and position."""
        rows: list[ChangedInvoice] = []
        for invoice in sorted(self.earlier):
            history = self.histories.get(invoice)
            last = self.last[invoice]
            rows.append(
                (
                    self.states[invoice].status,
                    encode_state(self.states[invoice]),
                    None if history is None else encode_history(history),
                    last.version,
                    last.position,
                    invoice,
                )
            )
        return rows


def user_changes(events: Sequence[Decoded]) -> Iterator[UserChange]:
    """What each account event does to the users view, in order: a new row, or its
    ``enabled`` set (True or False) for a username."""
    for _, event in events:
        if isinstance(event, UserRegistered):
            registered_at = format_time(event.registered_at)
            row = (event.username, event.role, event.platform, event.password_hash, registered_at)
            yield "register", row
        elif isinstance(event, UserDisabled | UserEnabled):
            yield "enable", (isinstance(event, UserEnabled), event.username)


def ledger_lines(events: Sequence[RecordedEvent]) -> list[Entry]:
    """The ledger lines of ``events`` (``service.domain.ledger.postings``); only money events
    are decoded."""
    entries: list[Entry] = []
    for recorded in events:
        if recorded.type not in MONEY_EVENTS:
            continue
        event = decode(recorded)
        invoice = getattr(event, "invoice", None)
        # The log's own text: the store writes every time as format_time does.
        recorded_at = recorded.recorded_at_text
        for line, (account, amount) in enumerate(postings(event)):
            entries.append(
                (recorded.position, line, account, amount, recorded.type, invoice, recorded_at)
            )
    return entries


def balance_changes(entries: Sequence[Entry]) -> list[tuple[str, int]]:
    """How much each account's balance moves by ``entries``, by account (the order in which a
    batch upserts them, so two appends never lock the same rows in opposite orders)."""
    changes: dict[str, int] = {}
    for _, _, account, amount, *_ in entries:
        changes[account] = changes.get(account, 0) + amount
    return sorted(changes.items())
