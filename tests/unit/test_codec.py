"""Unit tests for the codec between domain dataclasses and the JSON objects stored in the log.

Every event type in ``EVENT_TYPES`` has a representative sample here (a test fails when a new
type is added without one); each sample must come back equal from ``to_data`` → JSON bytes →
``from_data``, with optional fields both set and ``None``, nested transaction lines, and aware
datetimes with microseconds in other time zones. The invoice state, stored in the invoice view,
must round-trip the same way.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hypothesis
import msgspec
import orjson
import pytest
from hypothesis import strategies as st

from eventstore.records import format_time as log_time
from service.domain.codec import format_time, from_data, json_decoder, parse_time, to_data
from service.domain.events import (
    EVENT_TYPES,
    BalanceCredited,
    BalanceDebited,
    BalanceToppedUp,
    Event,
    IdempotentRequestRecorded,
    InvoiceCanceled,
    InvoiceCreated,
    InvoiceExpired,
    InvoiceMarkedPaid,
    InvoicePaid,
    LatePaymentReceived,
    MismatchedPaymentReceived,
    OnmarketInvoiceReserved,
    RefundCompleted,
    RefundRequested,
    TransactionCompleted,
    TransactionLine,
    UserDisabled,
    UserEnabled,
    UserRegistered,
)
from service.domain.invoice import Invoice, evolve
from service.domain.webhook_events import (
    WebhookDeliveryAttempted,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointUpdated,
    WebhookMessageQueued,
    WebhookMessageResent,
    WebhookSecretRotated,
)

TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")

WIB = timezone(timedelta(hours=7))  # Jakarta
AT = datetime(2024, 1, 31, 12, 5, 44, 155123, tzinfo=UTC)
AT_WIB = datetime(2024, 1, 31, 19, 5, 44, 155123, tzinfo=WIB)  # the same instant as AT
INVOICE = "OM1a2B3c4D5e6F7"

LINE_A = TransactionLine("OMK-001", "seller1", 100_000, 15_000, 2_000, 5_000, None)
LINE_B = TransactionLine("OMK-002", "seller2", 40_000, 8_000, 0, 0, "WB-0002")

CREATED = InvoiceCreated(
    invoice=INVOICE,
    username="usernew1",
    service="ONMARKET",
    source="XENDIT",
    total_amount=165_000,
    transactions=(LINE_A, LINE_B),
    gateway_reference="xnd-inv-1",
    payment_url="http://localhost:8080/sandbox/checkout/xnd-inv-1",
    qr_string=None,
    created_at=AT,
    expired_at=AT + timedelta(hours=2),
)
CREATED_QRIS = InvoiceCreated(
    invoice="OT0000000000001",
    username="usernew1",
    service="ONTICKET",
    source="QRIS",
    total_amount=1,
    transactions=(TransactionLine("OTK-1", "seller1", 1, 0, 0, 0, None),),
    gateway_reference="qr_0b9f4e8e-6c38-4c5d-a4a3-1b8f3b1c2d3e",
    payment_url=None,
    qr_string="00020101021226...6304ABCD",
    created_at=AT_WIB,
    expired_at=AT_WIB + timedelta(hours=2),
)

SAMPLES: list[Event] = [
    CREATED,
    CREATED_QRIS,
    InvoicePaid(INVOICE, 165_000, "XENDIT", "pay-1", "BANK_TRANSFER", "BCA", AT),
    InvoiceMarkedPaid(
        INVOICE, 165_000, "XENDIT", "MANUAL", "BCA-TRF-0042 ✓", "paid at the counter", "admin", AT
    ),
    InvoiceExpired(INVOICE, AT + timedelta(hours=2)),
    InvoiceCanceled(INVOICE, "onmarket", AT),
    RefundRequested(INVOICE, "OMK-001", 117_000, "onmarket", AT),
    RefundCompleted(INVOICE, "OMK-001", 117_000, AT),
    TransactionCompleted(
        INVOICE, "OMK-002", "ONMARKET", "seller2", 48_000, 0, 0, "onmarket", AT_WIB
    ),
    LatePaymentReceived(
        INVOICE, "EXPIRED", 165_000, "pay-2", "EWALLET", "OVO", AT, AT + timedelta(seconds=1)
    ),
    MismatchedPaymentReceived(
        INVOICE, 164_999, 165_000, "pay-3", "QRIS", "QRIS", AT, AT + timedelta(seconds=1)
    ),
    BalanceToppedUp("usernew1", 10**12, "admin", AT),
    BalanceDebited("usernew1", 165_000, INVOICE, AT),
    BalanceCredited("usernew1", 117_000, INVOICE, "refund", f"escrow:{INVOICE}", AT),
    OnmarketInvoiceReserved("OMK-001", INVOICE),
    IdempotentRequestRecorded(
        "usernew1",
        "5f8d-key",
        "sha256:ab12",
        200,
        {"invoice": INVOICE, "transaction": [{"invoice_onmarket": "OMK-001", "status": "PENDING"}]},
        AT + timedelta(hours=24),
    ),
    UserRegistered("usernew1", "buyer", None, "scrypt$16384$8$1$c2FsdA$aGFzaA", AT),
    UserRegistered("onmarket", "platform", "ONMARKET", "scrypt$16384$8$1$c2FsdA$aGFzaA", AT),
    UserDisabled("usernew1", "cli:operator", AT),
    UserEnabled("usernew1", "cli:operator", AT + timedelta(minutes=5)),
    WebhookEndpointCreated(
        "ep_0123456789abcdef01234567",
        "ONMARKET",
        "https://example.com/hook",
        ("invoice.paid", "invoice.expired"),
        "",
        "gAAAA-sealed",
        "onmarket",
        AT_WIB,
    ),
    WebhookEndpointUpdated(
        "ep_0123456789abcdef01234567", "https://x.test/", (), "d", True, "system", AT, "410"
    ),
    WebhookSecretRotated("ep_0123456789abcdef01234567", "gAAAA-new", AT, "onmarket", AT_WIB),
    WebhookEndpointDeleted("ep_0123456789abcdef01234567", "admin", AT),
    WebhookMessageQueued(
        "msg_" + "0" * 32, "ep_x", "ONMARKET", INVOICE, "invoice.paid", '{"a": 1}', 7, AT
    ),
    WebhookDeliveryAttempted(
        "msg_" + "0" * 32, "ep_x", 1, AT, 500, 12, "oops", "", "pending", AT_WIB
    ),
    WebhookDeliveryAttempted(
        "msg_" + "0" * 32, "ep_x", 2, AT, 0, 15000, "", "timeout", "failed", None
    ),
    WebhookMessageResent("msg_" + "0" * 32, "ep_x", "onmarket", AT),
]


def sample_id(event: Event) -> str:
    return type(event).__name__


def through_json(data: dict[str, Any]) -> dict[str, Any]:
    """The object as the log gives it back: serialised to JSON bytes and parsed again."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(data))
    return loaded


def stored_times(value: Any, data: Any) -> list[Any]:
    """What ``to_data`` stored for each datetime in ``value``, nested ones included."""
    if isinstance(value, datetime):
        return [data]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            text
            for field in dataclasses.fields(value)
            for text in stored_times(getattr(value, field.name), data[field.name])
        ]
    if isinstance(value, tuple):
        return [
            text
            for item, stored in zip(value, data, strict=True)
            for text in stored_times(item, stored)
        ]
    return []


def test_every_event_type_has_a_sample() -> None:
    """A new event type must be added to SAMPLES so that its round trip is tested."""
    assert {type(event) for event in SAMPLES} == set(EVENT_TYPES.values())


def test_event_types_are_registered_under_their_class_names() -> None:
    assert all(name == cls.__name__ for name, cls in EVENT_TYPES.items())


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_an_event_comes_back_equal_from_its_stored_json(event: Event) -> None:
    data = to_data(event)

    restored = from_data(EVENT_TYPES[type(event).__name__], through_json(data))

    assert restored == event
    assert type(restored) is type(event)


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_an_event_decoded_straight_from_its_stored_text_equals_the_one_from_the_dict(
    event: Event,
) -> None:
    """A replay decodes events from the log's JSON text (``json_decoder``); it must build what
    ``from_data`` builds from the parsed text, and refuse what ``from_data`` refuses."""
    cls = EVENT_TYPES[type(event).__name__]
    text = orjson.dumps(to_data(event), option=orjson.OPT_SORT_KEYS)

    restored = json_decoder(cls).decode(text)

    assert restored == from_data(cls, orjson.loads(text)) == event
    assert type(restored) is type(event)
    wrong = orjson.dumps({**orjson.loads(text), next(iter(orjson.loads(text))): [1, 2]})
    with pytest.raises(msgspec.ValidationError):
        json_decoder(cls).decode(wrong)
    with pytest.raises(msgspec.ValidationError):
        from_data(cls, orjson.loads(wrong))


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_stored_times_are_utc_with_microseconds(event: Event) -> None:
    for text in stored_times(event, to_data(event)):
        assert isinstance(text, str)
        assert TIME_FORMAT.fullmatch(text), text


def test_times_in_other_zones_are_stored_as_the_same_instant_in_utc() -> None:
    data = to_data(InvoiceCanceled(INVOICE, "onmarket", AT_WIB))

    assert data["canceled_at"] == "2024-01-31T12:05:44.155123Z"


def test_times_come_back_in_utc() -> None:
    restored = from_data(InvoiceCanceled, to_data(InvoiceCanceled(INVOICE, "onmarket", AT_WIB)))

    assert restored.canceled_at == AT
    assert restored.canceled_at.utcoffset() == timedelta(0)


def test_a_time_on_a_whole_second_keeps_six_digits_of_microseconds() -> None:
    assert format_time(datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)) == (
        "2024-02-29T23:59:59.000000Z"
    )


def test_nested_transaction_lines_are_stored_as_an_array_of_objects() -> None:
    data = to_data(CREATED)

    assert data["transactions"] == [
        {
            "invoice_onmarket": "OMK-001",
            "seller_username": "seller1",
            "amount": 100_000,
            "freight_charge": 15_000,
            "insurance_amount": 2_000,
            "commission_onmarket": 5_000,
            "waybill_number": None,
        },
        {
            "invoice_onmarket": "OMK-002",
            "seller_username": "seller2",
            "amount": 40_000,
            "freight_charge": 8_000,
            "insurance_amount": 0,
            "commission_onmarket": 0,
            "waybill_number": "WB-0002",
        },
    ]
    assert data["qr_string"] is None


def test_a_restored_event_has_tuples_where_its_fields_say_tuple() -> None:
    """Lists would make the frozen event unhashable and unequal to the original."""
    restored = from_data(InvoiceCreated, through_json(to_data(CREATED)))

    assert isinstance(restored.transactions, tuple)
    assert all(isinstance(line, TransactionLine) for line in restored.transactions)
    assert hash(restored.transactions) == hash(CREATED.transactions)


def invoice_state() -> Invoice:
    """A settled invoice: one store refunded, one completed, and a late payment recorded."""
    state = evolve(None, CREATED)
    for event in SAMPLES:
        if isinstance(
            event,
            InvoicePaid
            | RefundRequested
            | RefundCompleted
            | TransactionCompleted
            | LatePaymentReceived,
        ):
            state = evolve(state, event)
    return state


def test_the_invoice_state_comes_back_equal_from_its_stored_json() -> None:
    """The invoice view stores the folded state; reading it back must give the same state."""
    state = invoice_state()
    assert [t.status for t in state.transactions] == ["REFUNDED", "COMPLETED"]
    assert state.payment_ids == ("pay-1", "pay-2")

    restored = from_data(Invoice, through_json(to_data(state)))

    assert restored == state
    assert restored.status == "COMPLETED"


def test_a_fresh_invoice_state_comes_back_equal_from_its_stored_json() -> None:
    state = evolve(None, CREATED_QRIS)

    assert from_data(Invoice, through_json(to_data(state))) == state


# -- property: any aware time round-trips to the same instant -----------------------------------

zones = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
)


@hypothesis.given(moments)
def test_any_aware_time_is_stored_in_the_format_and_comes_back_as_the_same_instant(
    moment: datetime,
) -> None:
    text = format_time(moment)

    assert TIME_FORMAT.fullmatch(text), text
    assert parse_time(text) == moment
    assert parse_time(text).utcoffset() == timedelta(0)


@hypothesis.given(moments)
def test_the_domain_writes_a_time_exactly_as_the_log_writes_its_recorded_at(
    moment: datetime,
) -> None:
    """Two functions by design (the domain imports nothing from the store), one text: the
    ledger view keeps an event's stored ``recorded_at`` as it is, beside times the domain wrote,
    and both must sort and compare as one format."""
    assert format_time(moment) == log_time(moment)


def test_a_time_before_the_year_1000_keeps_a_four_digit_year() -> None:
    """Years below 1000 are zero-padded, so the text still sorts and parses."""
    moment = datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

    text = format_time(moment)

    assert text == "0999-12-31T23:59:59.999999Z"
    assert parse_time(text) == moment


def test_a_naive_time_is_refused() -> None:
    """A datetime without a timezone is not silently taken as local time."""
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 1, 12, 0))
