"""The checkout command: a buyer's invoice, its marketplace numbers reserved, its gateway payment
made, and for source BALANCE paid at once from the buyer's balance.

One read finds the idempotency record and every number's reservation; the domain decides on
that (``decide_checkout``) before the gateway is asked for a payment, so a refused checkout
leaves nothing payable behind. The payment is made once and kept across retries; if no invoice
comes of it (an error, or a concurrent twin with the same Idempotency-Key won), it is expired
at the gateway again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from eventstore import NO_STREAM
from service.application.commands import Command, Context
from service.application.errors import IdempotencyKeyReused
from service.application.handling import Application, Attempt, latest
from service.application.ids import new_invoice_id
from service.domain.accounts import Account, evolve_account
from service.domain.balance import evolve_balance
from service.domain.checkout import CheckoutOrder, PaymentHandle, decide_checkout
from service.domain.errors import DomainError
from service.domain.events import IdempotentRequestRecorded, InvoiceCreated, OnmarketInvoiceReserved
from service.domain.invoice import Invoice, evolve
from service.domain.services import BALANCE, QRIS
from service.domain.streams import (
    balance_stream,
    idempotency_stream,
    invoice_stream,
    reservation_stream,
    user_stream,
)
from service.gateway.port import PaymentItem, PaymentRequest
from service.presenters import checkout_answer
from service.records import decode

log = structlog.get_logger("service.application")

Answer = tuple[int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client's Idempotency-Key and the hash of the request it came with."""

    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class Checkout(Command[Answer]):
    """Create an invoice for ``order``; a repeat with the same ``idempotency`` key and request
    answers what the first did, with another request it is refused (409)."""

    order: CheckoutOrder
    idempotency: Idempotency | None = None


async def checkout(app: Application, command: Checkout, context: Context) -> Answer:
    try:
        return await _checkout(app, command, context)
    except DomainError:
        # A repeat racing its first request can be refused (the numbers are now reserved, the
        # balance spent) by that very request: then it answers what the first did.
        if command.idempotency is not None:
            stored = await _stored_answer(app, command.order.username, command.idempotency)
            if stored is not None:
                return stored
        raise


async def _checkout(app: Application, command: Checkout, context: Context) -> Answer:
    order, idempotency, now = command.order, command.idempotency, app.clock()
    invoice = new_invoice_id(order.service)
    payment = _GatewayPayment(app, order, invoice, now + app.invoice_ttl)
    metadata = context.metadata()

    async def attempt(tx: Attempt) -> Answer:
        key_record, holders = await _read_claims(app, tx, command)
        if idempotency is not None:
            stored = answer_of(app, key_record, idempotency)
            if stored is not None:
                return stored
        sellers = await _read_sellers(app, order)
        balance = None
        if order.source == BALANCE:
            balance = await tx.load(balance_stream(order.username), evolve_balance)
        decision = decide_checkout(
            order,
            invoice=invoice,
            holders=holders,
            sellers=sellers,
            balance=balance,
            now=now,
            expires_at=now + app.invoice_ttl,
        )
        events = decision.invoice_events(await payment.made() if decision.needs_gateway else None)
        created = events[0]
        assert isinstance(created, InvoiceCreated)
        answer = checkout_answer(created, decision.status)
        tx.append(invoice_stream(invoice), events, metadata, expected=NO_STREAM)
        for reserved in decision.reservations:
            tx.append(reservation_stream(reserved.invoice_onmarket), [reserved], metadata)
        if decision.debit is not None:
            tx.append(balance_stream(order.username), [decision.debit], metadata)
        if idempotency is not None:
            record = IdempotentRequestRecorded(
                order.username,
                idempotency.key,
                idempotency.request_hash,
                200,
                answer,
                now + app.idempotency_ttl,
            )
            tx.append(idempotency_stream(order.username, idempotency.key), [record], metadata)
        return 200, answer

    # A BALANCE checkout reads its buyer's balance after the reservations; named here, its
    # lock is taken first, in order, rather than by starting again (see ``serialise``).
    streams = [balance_stream(order.username)] if order.source == BALANCE else []
    try:
        status, answer = await app.run(attempt, streams=streams)
    except BaseException:
        await payment.abandon()  # no invoice: nothing must stay payable
        raise
    if answer.get("invoice") != invoice:  # a concurrent twin with the same key won
        await payment.abandon()
    return status, answer


async def _read_claims(
    app: Application, tx: Attempt, command: Checkout
) -> tuple[IdempotentRequestRecorded | None, dict[str, Invoice | None]]:
    """The idempotency record, and the invoice holding each number's reservation, in one read
    of the reservation and key streams (the holders' states mostly come from the cache)."""
    username, idempotency = command.order.username, command.idempotency
    key_stream = idempotency_stream(username, idempotency.key) if idempotency else None
    numbers = [line.invoice_onmarket for line in command.order.lines]
    streams = [reservation_stream(number) for number in numbers]
    last = await tx.last_events([*streams, key_stream] if key_stream else streams)
    key = last.get(key_stream) if key_stream else None
    key_record = decode(key) if key is not None else None
    assert key_record is None or isinstance(key_record, IdempotentRequestRecorded)
    holders: dict[str, Invoice | None] = {}
    for number, stream in zip(numbers, streams, strict=True):
        held = last.get(stream)
        if held is not None:
            reserved = decode(held)
            assert isinstance(reserved, OnmarketInvoiceReserved)
            holders[number], _ = await app.load(invoice_stream(reserved.invoice), evolve)
    return key_record, holders


async def _read_sellers(app: Application, order: CheckoutOrder) -> dict[str, Account | None]:
    """Each seller's account, from the log through the write model's cache (a lookup by key per
    seller once cached). A name is taken for good, so an account that exists cannot vanish; the
    one race left, a seller disabled while this checkout decides, is settled by commit order,
    as if the checkout had committed just before the disable.

    Read without the stream's turn (``app.load``, not ``tx.load``): the checkout appends nothing
    to a seller's stream, and every checkout of a popular seller taking that seller's turn, held
    until its commit, would put all of them in one line (measured: half the checkouts a second
    at 16 and 64 connections, all paying one seller)."""
    names = dict.fromkeys(line.seller_username for line in order.lines)
    return {name: (await app.load(user_stream(name), evolve_account))[0] for name in names}


async def _stored_answer(
    app: Application, username: str, idempotency: Idempotency
) -> Answer | None:
    recorded, _ = await app.load(idempotency_stream(username, idempotency.key), latest)
    assert recorded is None or isinstance(recorded, IdempotentRequestRecorded)
    return answer_of(app, recorded, idempotency)


def answer_of(
    app: Application, recorded: IdempotentRequestRecorded | None, idempotency: Idempotency
) -> Answer | None:
    """The first answer to a repeat of a key still remembered; 409 for another request."""
    if recorded is None or recorded.expires_at <= app.clock():
        return None
    if recorded.request_hash != idempotency.request_hash:
        raise IdempotencyKeyReused()
    app.outcomes.replayed()
    return recorded.status, recorded.response


class _GatewayPayment:
    """The checkout's one payment at the gateway: made when an accepting decision first asks
    for it, reused by a retry, and expired again if no invoice came of it."""

    def __init__(
        self, app: Application, order: CheckoutOrder, invoice: str, expires_at: datetime
    ) -> None:
        self._app, self._order, self._invoice, self._expires_at = app, order, invoice, expires_at
        self._made: PaymentHandle | None = None

    async def made(self) -> PaymentHandle:
        if self._made is None:
            order, gateway = self._order, self._app.gateway
            request = PaymentRequest(
                self._invoice,
                order.total_amount,
                f"{order.service} checkout",
                self._expires_at,
                tuple(PaymentItem(line.invoice_onmarket, line.total) for line in order.lines),
            )
            create = gateway.create_qr if order.source == QRIS else gateway.create_invoice
            made = await create(request)
            self._made = PaymentHandle(made.reference, made.payment_url, made.qr_string)
        return self._made

    async def abandon(self) -> None:
        if self._made is None:
            return
        try:
            await self._app.gateway.expire(self._made.reference)
        except Exception:
            log.exception(
                "could not expire an unused gateway payment", reference=self._made.reference
            )
