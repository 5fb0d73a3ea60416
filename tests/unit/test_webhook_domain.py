"""The webhooks' pure domain: which event types an invoice event makes, the stable message
id, the retry schedule's decision after each attempt, and the endpoint's secrets in rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.events import (
    InvoiceCreated,
    InvoicePaid,
    RefundCompleted,
    RefundRequested,
    TransactionCompleted,
    TransactionLine,
)
from service.domain.invoice import Invoice, evolve
from service.domain.webhook_delivery import (
    DEFAULT_SCHEDULE,
    DELIVERED,
    FAILED,
    PENDING,
    AttemptResult,
    Message,
    decide_attempt,
    message_data,
    message_id,
    webhook_types,
)
from service.domain.webhook_endpoint import (
    ROTATION_GRACE,
    decide_creation,
    decide_rotation,
    evolve_endpoint,
)
from service.webhooks.signing import SecretBox, new_secret, signature, verify

AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LINES = (
    TransactionLine("A-1", "seller1", 10_000, 5_000, 100, 1_000, None),
    TransactionLine("A-2", "seller2", 20_000, 5_000, 100, 1_000, None),
)
CREATED = InvoiceCreated(
    "OM0000000000001", "usernew1", "ONMARKET", "XENDIT", 40_200, LINES, "ref", None, None, AT, AT
)
PAID = InvoicePaid("OM0000000000001", 40_200, "XENDIT", "pay-1", "BANK", "BCA", AT)


def _fold(*events: object) -> Invoice:
    state: Invoice | None = None
    for event in events:
        state = evolve(state, event)  # type: ignore[arg-type]
    assert state is not None
    return state


def test_each_event_makes_its_type_and_a_settling_one_the_invoices_too() -> None:
    paid = _fold(CREATED, PAID)
    one = TransactionCompleted("OM0000000000001", "A-1", "ONMARKET", "seller1", 1, 1, 1, "x", AT)
    two = TransactionCompleted("OM0000000000001", "A-2", "ONMARKET", "seller2", 1, 1, 1, "x", AT)
    after_one = evolve(paid, one)

    assert webhook_types(CREATED, None, _fold(CREATED)) == ["invoice.created"]
    assert webhook_types(PAID, _fold(CREATED), paid) == ["invoice.paid"]
    assert webhook_types(one, paid, after_one) == ["transaction.completed"]
    assert webhook_types(two, after_one, evolve(after_one, two)) == [
        "transaction.completed",
        "invoice.completed",
    ]


def test_refunding_every_store_makes_invoice_refunded() -> None:
    single = InvoiceCreated(
        "OM0000000000002", "u", "ONMARKET", "XENDIT", 15_100, LINES[:1], "r", None, None, AT, AT
    )
    paid = _fold(single, InvoicePaid("OM0000000000002", 15_100, "XENDIT", "p", "B", "C", AT))
    requested = RefundRequested("OM0000000000002", "A-1", 15_100, "onmarket", AT)
    refunding = evolve(paid, requested)
    completed = RefundCompleted("OM0000000000002", "A-1", 15_100, AT)

    assert webhook_types(requested, paid, refunding) == ["transaction.refund_requested"]
    data = message_data(requested, refunding, 3)
    assert data == {
        "invoice": "OM0000000000002",
        "status": "PAID",
        "service": "ONMARKET",
        "sequence": 3,
        "invoice_onmarket": "A-1",
        "transaction_status": "REFUND_IN_PROCESS",
        "amount": 15_100,
    }
    refunded = evolve(refunding, completed)
    assert webhook_types(completed, refunding, refunded) == [
        "transaction.refunded",
        "invoice.refunded",
    ]


def test_the_message_id_is_stable_and_distinct_per_endpoint_and_type() -> None:
    assert message_id("e1", "ep", "invoice.paid") == message_id("e1", "ep", "invoice.paid")
    ids = {
        message_id("e1", "ep", "invoice.paid"),
        message_id("e1", "ep2", "invoice.paid"),
        message_id("e1", "ep", "invoice.completed"),
        message_id("e2", "ep", "invoice.paid"),
    }
    assert len(ids) == 4


def _message(round_attempts: int = 0) -> Message:
    return Message(
        "msg_x", "ep", "ONMARKET", "OM1", "invoice.paid", "{}", PENDING, 0, round_attempts, AT
    )


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
@pytest.mark.parametrize("attempt", range(1, len(DEFAULT_SCHEDULE)))
def test_a_failure_waits_the_schedules_time_within_the_jitter(attempt: int, jitter: float) -> None:
    result = AttemptResult(AT, 500, 10, "no")

    decided = decide_attempt(_message(attempt - 1), result, DEFAULT_SCHEDULE, jitter)

    assert decided.outcome == PENDING
    assert decided.next_attempt_at is not None
    wait = (decided.next_attempt_at - AT).total_seconds()
    assert DEFAULT_SCHEDULE[attempt] * 0.9 <= wait <= DEFAULT_SCHEDULE[attempt] * 1.1


@pytest.mark.parametrize("attempt", range(1, len(DEFAULT_SCHEDULE)))
def test_the_jitter_spreads_the_wait_from_ninety_to_a_hundred_and_ten_percent(
    attempt: int,
) -> None:
    """The draw's ends give the ends of the ±10 % band exactly, so a wait that ignored the
    jitter (or applied it the wrong way round) fails here."""
    result = AttemptResult(AT, 500, 10, "no")
    planned = DEFAULT_SCHEDULE[attempt]

    def wait(jitter: float) -> float:
        decided = decide_attempt(_message(attempt - 1), result, DEFAULT_SCHEDULE, jitter)
        assert decided.next_attempt_at is not None
        return (decided.next_attempt_at - AT).total_seconds()

    assert wait(0.0) == pytest.approx(planned * 0.9, abs=1e-6)
    assert wait(0.5) == pytest.approx(planned, abs=1e-6)
    assert wait(0.999_999) == pytest.approx(planned * 1.1, rel=1e-5)


def test_the_last_failure_of_a_round_fails_the_message() -> None:
    last = _message(len(DEFAULT_SCHEDULE) - 1)
    decided = decide_attempt(
        last, AttemptResult(AT, 0, 15_000, "", "timeout"), DEFAULT_SCHEDULE, 0.5
    )
    assert (decided.outcome, decided.next_attempt_at) == (FAILED, None)


def test_2xx_delivers_410_fails_and_retry_after_is_a_floor() -> None:
    assert (
        decide_attempt(_message(), AttemptResult(AT, 204, 1, ""), DEFAULT_SCHEDULE, 0).outcome
        == DELIVERED
    )
    assert (
        decide_attempt(_message(), AttemptResult(AT, 410, 1, ""), DEFAULT_SCHEDULE, 0).outcome
        == FAILED
    )
    slow = decide_attempt(
        _message(), AttemptResult(AT, 429, 1, "", retry_after=600), DEFAULT_SCHEDULE, 0.5
    )
    assert slow.next_attempt_at == AT + timedelta(seconds=600)


def test_a_rotated_secret_signs_beside_the_old_one_until_the_grace_ends() -> None:
    (created,) = decide_creation(None, "ep", "ONMARKET", "https://x", (), "", "old", "onmarket", AT)
    endpoint = evolve_endpoint(None, created)
    (rotated,) = decide_rotation(endpoint, "new", "onmarket", AT)
    endpoint = evolve_endpoint(endpoint, rotated)

    assert endpoint.signing_secrets(AT) == ["new", "old"]
    assert endpoint.signing_secrets(AT + ROTATION_GRACE) == ["new"]


def test_secrets_are_sealed_and_sign_per_standard_webhooks() -> None:
    secret = new_secret()
    box = SecretBox("a key of the settings")
    sealed = box.seal(secret)
    assert secret not in sealed
    assert box.open(sealed) == secret
    with pytest.raises(ValueError, match="another webhook_secret_key"):
        SecretBox("another key").open(sealed)
    header = signature(secret, "msg_1", 1_700_000_000, b"{}")
    assert verify(secret, "msg_1", 1_700_000_000, b"{}", f"v1,other {header}")
    assert not verify(secret, "msg_1", 1_700_000_001, b"{}", header)
