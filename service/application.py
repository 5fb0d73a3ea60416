"""Command handlers: load the streams a decision needs, decide, append with expected versions.

Each handler reads the current state of every stream it touches from the log (never from a
view), lets the pure domain decide, and appends all resulting events in one atomic multi-stream
append that names the version each stream was read at. If any stream moved meanwhile, the store
refuses with ``ConcurrencyError`` and the handler decides again from the new state, so two racing
requests can never both act on the same old state.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from eventstore import (
    ANY,
    NO_STREAM,
    Checkpoint,
    ConcurrencyError,
    DuplicateEventError,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from eventstore.sqlite import SQLiteEventStore
from service.domain import errors
from service.domain.balance import Balance, decide_debit, evolve_balance
from service.domain.codec import parse_time
from service.domain.events import (
    BalanceCredited,
    BalanceToppedUp,
    Event,
    IdempotentRequestRecorded,
    InvoiceCanceled,
    InvoiceCreated,
    InvoiceExpired,
    InvoicePaid,
    LatePaymentReceived,
    OnmarketInvoiceReserved,
    TransactionLine,
    UserRegistered,
    decode,
    encode,
)
from service.domain.invoice import (
    PAID,
    PENDING,
    Invoice,
    Payment,
    decide_cancel,
    decide_completion,
    decide_expiry,
    decide_payment,
    decide_refund_completion,
    evolve,
)
from service.domain.ledger import GATEWAY_ACCOUNT, escrow
from service.gateway.port import (
    EXPIRED as GATEWAY_EXPIRED,
)
from service.gateway.port import (
    PAID as GATEWAY_PAID,
)
from service.gateway.port import (
    Gateway,
    GatewayPayment,
    PaymentItem,
    PaymentRequest,
)
from service.presenters import checkout_answer
from service.projections.invoices import invoice_stream
from service.stream_cache import FoldedStates

log = structlog.get_logger("service.application")

T = TypeVar("T")
S = TypeVar("S")

MAX_ATTEMPTS = 25
# Events read at a time when a decision catches its stream's cached state up.
TAIL_PAGE = 100
SERVICE_PREFIXES = {"ONMARKET": "OM", "ONDELIVERY": "OD", "ONTICKET": "OT"}
_ID_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_PAYMENT_NAMESPACE = uuid.UUID("6f1c3f3e-6d0b-4d55-9a53-0b8e8f3c2a11")


class Conflict(errors.DomainError):
    message, code, status = "Too many concurrent changes; retry the request", "CONFLICT", 409


class IdempotencyKeyReused(errors.DomainError):
    message = "Idempotency-Key was already used with a different request"
    code, status = "IDEMPOTENCY_KEY_REUSED", 409


class PaymentIdReused(errors.DomainError):
    message = "This payment id was already recorded for another invoice"
    code, status = "PAYMENT_ID_REUSED", 409


class UserExists(errors.DomainError):
    message, code, status = "User already exists", "USER_EXISTS", 409


class UserNotFound(errors.DomainError):
    message, code = "User not found", "USER_NOT_FOUND"


class NotABuyer(errors.DomainError):
    message, code = "Only buyer accounts have a balance to top up", "NOT_A_BUYER"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: from the request's credentials."""

    username: str
    role: str
    platform: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """Who asked and in which request: recorded in every event's metadata."""

    actor: str
    request_id: str | None = None

    def metadata(self, **extra: Any) -> dict[str, Any]:
        return {"actor": self.actor, "request_id": self.request_id, **extra}


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    total_amount: int
    service: str
    source: str
    transactions: tuple[TransactionLine, ...]


@dataclass(frozen=True, slots=True)
class CheckoutClaims:
    """What a checkout decides on besides its request, with the versions it was read at: the
    idempotency key's record and, per marketplace number, the invoice holding it."""

    key_record: IdempotentRequestRecorded | None
    key_version: int
    reservations: dict[str, tuple[str | None, int]]


def balance_stream(username: str) -> str:
    return f"balance-{username}"


def reservation_stream(invoice_onmarket: str) -> str:
    return f"onmarket-{invoice_onmarket}"


def user_stream(username: str) -> str:
    return f"user-{username}"


def idempotency_stream(username: str, key: str) -> str:
    # Hashed: a client's key may be long or contain anything a stream id must not.
    digest = hashlib.sha256(f"{username}\n{key}".encode()).hexdigest()[:40]
    return f"idempotency-{digest}"


def new_invoice_id(service: str) -> str:
    """Service prefix and 13 random characters of [0-9A-Za-z]."""
    # One draw from the operating system's randomness instead of thirteen.
    number, characters = secrets.randbelow(len(_ID_ALPHABET) ** 13), []
    for _ in range(13):
        number, digit = divmod(number, len(_ID_ALPHABET))
        characters.append(_ID_ALPHABET[digit])
    return SERVICE_PREFIXES[service] + "".join(characters)


def payment_event_id(payment_id: str, event_type: str) -> str:
    """Each event a gateway payment causes has an id derived from the payment's, so a repeated
    callback, however concurrent, can never record it twice."""
    return str(uuid.uuid5(_PAYMENT_NAMESPACE, f"payment:{payment_id}:{event_type}"))


def _latest(state: Event | None, event: Event) -> Event:
    """A fold for streams whose last event is their state (reservations, keys, accounts)."""
    return event


def _reserved_by(event: Event) -> str:
    assert isinstance(event, OnmarketInvoiceReserved)
    return event.invoice


async def retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` again from fresh state while it loses races; give up with 409.

    A ``DuplicateEventError`` is a race too: a concurrent twin stored some of the same events
    first, and deciding again from the new state sees them."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return await attempt()
        except (ConcurrencyError, DuplicateEventError):
            continue
    raise Conflict()


class InvoiceService:
    """The application: every state change of the service goes through one of these methods."""

    def __init__(
        self,
        store: SQLiteEventStore,
        gateway: Gateway,
        *,
        clock: Callable[[], datetime],
        invoice_ttl: timedelta,
        idempotency_ttl: timedelta,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.invoice_ttl = invoice_ttl
        self.idempotency_ttl = idempotency_ttl
        self.folded = FoldedStates()

    # -- reading streams ---------------------------------------------------------------------

    async def load(
        self, stream_id: str, fold: Callable[[S | None, Event], S]
    ) -> tuple[S | None, int]:
        """The state of a stream and the version it was read at: the cached fold of the events
        already seen, and only the events after them read from the log."""
        state, version = self.folded.get(stream_id, fold)
        seen = version
        while True:
            tail = await self.store.stream_tail(stream_id, version, TAIL_PAGE)
            for recorded in tail:
                state = fold(state, decode(recorded))
                version = recorded.version
            if len(tail) < TAIL_PAGE:
                break
            await asyncio.sleep(0)  # a long uncached stream: let other requests in between pages
        if version > seen:
            self.folded.put(stream_id, fold, state, version)
        return state, version

    async def load_invoice(self, invoice: str) -> tuple[Invoice | None, int]:
        return await self.load(invoice_stream(invoice), evolve)

    async def load_balance(self, username: str) -> tuple[Balance | None, int]:
        return await self.load(balance_stream(username), evolve_balance)

    async def invoice_as_of(
        self, invoice: str, *, at: datetime | None = None, position: int | None = None
    ) -> tuple[Invoice, datetime] | None:
        """The invoice as it stood at time ``at`` or just after log position ``position``, by
        replaying its stream with the same ``evolve`` as the live view; None before it existed.
        Also returns the moment to show it at: ``at``, or the commit time of ``position``."""
        moment = at if position is None else await self._commit_time(position)
        state: Invoice | None = None
        async for recorded in self.store.read_stream(invoice_stream(invoice)):
            if (at is not None and recorded.recorded_at > at) or (
                position is not None and recorded.position > position
            ):
                break
            state = evolve(state, decode(recorded))
        if state is None or moment is None:
            return None
        return state, moment

    async def _commit_time(self, position: int) -> datetime | None:
        """When the event at ``position`` (or the last one before it) was committed."""
        rows = await self.store.query(
            "SELECT recorded_at FROM events WHERE position <= ? ORDER BY position DESC LIMIT 1",
            (position,),
        )
        return parse_time(rows[0][0]) if rows else None

    # -- checkout ----------------------------------------------------------------------------

    async def checkout(
        self,
        actor: Actor,
        request: CheckoutRequest,
        context: Context,
        idempotency: tuple[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Create an invoice; pay it at once from the balance for source BALANCE.

        ``idempotency`` is ``(key, request_hash)``: a repeat with the same key and the same
        request answers what the first did; with another request it is refused (409).
        """
        try:
            return await self._checkout(actor, request, context, idempotency)
        except errors.DomainError:
            # A repeat racing its first request can be refused (the numbers are now reserved,
            # the balance spent) by that very request: then it answers what the first did.
            if idempotency is not None:
                stored = await self._stored_answer(actor.username, *idempotency)
                if stored is not None:
                    return stored
            raise

    async def _checkout(
        self,
        actor: Actor,
        request: CheckoutRequest,
        context: Context,
        idempotency: tuple[str, str] | None,
    ) -> tuple[int, dict[str, Any]]:
        claims = await self._read_claims(actor.username, request, idempotency)
        if idempotency is not None:
            stored = self._answer_of(claims.key_record, idempotency[1])
            if stored is not None:
                return stored
        now = self.clock()
        await self._reserve(request, "", now, Context("check"), claims)  # refuse before paying
        invoice = new_invoice_id(request.service)
        payment = await self._gateway_payment(invoice, request, now)
        unused = [claims]  # the first attempt decides on what was just read; a retry rereads

        async def attempt() -> tuple[int, dict[str, Any]]:
            latest = unused.pop() if unused else None
            if latest is None:
                latest = await self._read_claims(actor.username, request, idempotency)
            return await self._create(
                actor, request, context, idempotency, invoice, payment, now, latest
            )

        try:
            status, answer = await retrying(attempt)
        except BaseException:
            await self._abandon(request, payment)  # no invoice: nothing must stay payable
            raise
        if answer.get("invoice") != invoice:  # a concurrent twin with the same key won
            await self._abandon(request, payment)
        return status, answer

    async def _read_claims(
        self, username: str, request: CheckoutRequest, idempotency: tuple[str, str] | None
    ) -> CheckoutClaims:
        """The idempotency record and each number's reservation, in one read."""
        key_stream = idempotency_stream(username, idempotency[0]) if idempotency else None
        numbers = [line.invoice_onmarket for line in request.transactions]
        streams = [reservation_stream(number) for number in numbers]
        last = await self.store.last_events([*streams, *filter(None, [key_stream])])
        key = last.get(key_stream) if key_stream else None
        key_record = decode(key) if key else None
        assert key_record is None or isinstance(key_record, IdempotentRequestRecorded)
        reservations: dict[str, tuple[str | None, int]] = {}
        for number, stream in zip(numbers, streams, strict=True):
            held = last.get(stream)
            reservations[number] = (_reserved_by(decode(held)), held.version) if held else (None, 0)
        return CheckoutClaims(key_record, key.version if key else 0, reservations)

    async def _abandon(self, request: CheckoutRequest, payment: GatewayPayment) -> None:
        if request.source == "BALANCE":
            return
        try:
            await self.gateway.expire(payment.reference)
        except Exception:
            log.exception("could not expire an unused gateway payment", reference=payment.reference)

    async def _create(
        self,
        actor: Actor,
        request: CheckoutRequest,
        context: Context,
        idempotency: tuple[str, str] | None,
        invoice: str,
        payment: GatewayPayment,
        now: datetime,
        claims: CheckoutClaims,
    ) -> tuple[int, dict[str, Any]]:
        """One attempt at writing the invoice (and its reservations, debit and key)."""
        if idempotency is not None:
            stored = self._answer_of(claims.key_record, idempotency[1])
            if stored is not None:
                return stored
        created = InvoiceCreated(
            invoice,
            actor.username,
            request.service,
            request.source,
            request.total_amount,
            request.transactions,
            payment.reference,
            payment.payment_url,
            payment.qr_string,
            now,
            now + self.invoice_ttl,
        )
        appends = await self._reserve(request, invoice, now, context, claims)
        invoice_events: list[Event] = [created]
        status = PENDING
        if request.source == "BALANCE":
            appends.append(await self._debit(actor.username, created, context))
            invoice_events.append(
                InvoicePaid(
                    invoice,
                    created.total_amount,
                    "BALANCE",
                    f"balance-{invoice}",
                    "BALANCE",
                    "BALANCE",
                    now,
                )
            )
            status = PAID
        answer = checkout_answer(created, status)
        appends.insert(
            0,
            StreamAppend(
                invoice_stream(invoice),
                NO_STREAM,
                [encode(event, context.metadata()) for event in invoice_events],
            ),
        )
        if idempotency is not None:
            appends.append(
                self._record_answer(
                    actor.username, idempotency, claims.key_version, answer, now, context
                )
            )
        await self.store.append_streams(appends)
        return 200, answer

    async def _gateway_payment(
        self, invoice: str, request: CheckoutRequest, now: datetime
    ) -> GatewayPayment:
        if request.source == "BALANCE":
            return GatewayPayment(reference=f"balance-{invoice}")
        payment = PaymentRequest(
            invoice,
            request.total_amount,
            f"{request.service} checkout",
            now + self.invoice_ttl,
            tuple(PaymentItem(line.invoice_onmarket, line.total) for line in request.transactions),
        )
        if request.source == "QRIS":
            return await self.gateway.create_qr(payment)
        return await self.gateway.create_invoice(payment)

    async def _holds(self, holder: str, now: datetime) -> bool:
        state, _ = await self.load_invoice(holder)
        return state is not None and state.holds_reservation(now)

    async def _reserve(
        self,
        request: CheckoutRequest,
        invoice: str,
        now: datetime,
        context: Context,
        claims: CheckoutClaims,
    ) -> list[StreamAppend]:
        """Claim each marketplace invoice number for ``invoice``; refuse any another live
        invoice holds, naming each of them."""
        appends, taken = [], {}
        for index, line in enumerate(request.transactions):
            holder, version = claims.reservations[line.invoice_onmarket]
            if holder is not None and await self._holds(holder, now):
                taken[str(index)] = {
                    "invoice_onmarket": [f"Already part of invoice {holder}, PENDING or PAID."]
                }
                continue
            event = OnmarketInvoiceReserved(line.invoice_onmarket, invoice)
            appends.append(
                StreamAppend(
                    reservation_stream(line.invoice_onmarket),
                    version,
                    [encode(event, context.metadata())],
                )
            )
        if taken:
            raise errors.InvoiceOnmarketInUse(errors={"transaction": taken})
        return appends

    async def _debit(
        self, username: str, created: InvoiceCreated, context: Context
    ) -> StreamAppend:
        balance, version = await self.load_balance(username)
        debit = decide_debit(
            balance, username, created.total_amount, created.invoice, created.created_at
        )
        return StreamAppend(balance_stream(username), version, [encode(debit, context.metadata())])

    async def _stored_answer(
        self, username: str, key: str, request_hash: str
    ) -> tuple[int, dict[str, Any]] | None:
        recorded, _ = await self._idempotency_record(username, key)
        return self._answer_of(recorded, request_hash)

    def _answer_of(
        self, recorded: IdempotentRequestRecorded | None, request_hash: str
    ) -> tuple[int, dict[str, Any]] | None:
        """The first answer to a repeat of a key still remembered; 409 for another request."""
        if recorded is None or recorded.expires_at <= self.clock():
            return None
        if recorded.request_hash != request_hash:
            raise IdempotencyKeyReused()
        return recorded.status, recorded.response

    async def _idempotency_record(
        self, username: str, key: str
    ) -> tuple[IdempotentRequestRecorded | None, int]:
        last, version = await self.load(idempotency_stream(username, key), _latest)
        assert last is None or isinstance(last, IdempotentRequestRecorded)
        return last, version

    def _record_answer(
        self,
        username: str,
        idempotency: tuple[str, str],
        key_version: int,
        answer: dict[str, Any],
        now: datetime,
        context: Context,
    ) -> StreamAppend:
        key, request_hash = idempotency
        stream = idempotency_stream(username, key)
        event = IdempotentRequestRecorded(
            username, key, request_hash, 200, answer, now + self.idempotency_ttl
        )
        return StreamAppend(stream, key_version, [encode(event, context.metadata())])

    # -- payments from the gateway ----------------------------------------------------------

    async def record_payment(self, invoice: str, payment: Payment, context: Context) -> str:
        """Apply a gateway's payment: PAID, or kept as the buyer's money if it came too late.

        Returns what happened: ``"paid"``, ``"credited"`` (late) or ``"duplicate"``.
        """

        async def attempt() -> str:
            state, version = await self.load_invoice(invoice)
            if state is None:
                raise errors.InvoiceNotFound()
            events = decide_payment(state, payment, self.clock())
            if not events:
                return "duplicate"
            await self._refuse_payment_of_another_invoice(invoice, payment.payment_id)
            late = [e for e in events if isinstance(e, LatePaymentReceived)]
            credits = [await self._credit_late_payment(state, late[0], context)] if late else []
            await self.store.append_streams(
                [
                    StreamAppend(
                        invoice_stream(invoice),
                        version,
                        [self._payment_event(e, payment, context) for e in events],
                    ),
                    *credits,
                ]
            )
            return "credited" if late else "paid"

        return await retrying(attempt)

    @staticmethod
    def _payment_event(event: Event, payment: Payment, context: Context) -> NewEvent:
        event_id = payment_event_id(payment.payment_id, type(event).__name__)
        return encode(event, context.metadata(payment_id=payment.payment_id), event_id)

    async def _refuse_payment_of_another_invoice(self, invoice: str, payment_id: str) -> None:
        """A gateway payment pays one invoice: the same payment id for another is refused."""
        ids = [
            payment_event_id(payment_id, kind) for kind in ("InvoicePaid", "LatePaymentReceived")
        ]
        rows = await self.store.query("SELECT stream_id FROM events WHERE event_id IN (?, ?)", ids)
        if any(stream != invoice_stream(invoice) for (stream,) in rows):
            raise PaymentIdReused()

    async def _credit_late_payment(
        self, state: Invoice, late: LatePaymentReceived, context: Context
    ) -> StreamAppend:
        username = state.created.username
        _, version = await self.load_balance(username)
        credit = BalanceCredited(
            username, late.amount, state.invoice, "late_payment", GATEWAY_ACCOUNT, late.received_at
        )
        event_id = payment_event_id(late.payment_id, "BalanceCredited")
        return StreamAppend(
            balance_stream(username),
            version,
            [encode(credit, context.metadata(payment_id=late.payment_id), event_id)],
        )

    async def expire_by_gateway(self, invoice: str, context: Context) -> bool:
        """The gateway says the payment can no longer be made: expire a PENDING invoice now."""

        async def attempt() -> bool:
            state, version = await self.load_invoice(invoice)
            if state is None:
                raise errors.InvoiceNotFound()
            now = self.clock()
            if state.status != PENDING:
                return False
            event = InvoiceExpired(invoice, min(now, state.created.expired_at))
            await self.store.append(
                invoice_stream(invoice), [encode(event, context.metadata())], version
            )
            return True

        return await retrying(attempt)

    async def expire_if_due(self, invoice: str, context: Context) -> bool:
        """Record the expiry of an invoice whose time has passed; False if nothing to do."""

        async def attempt() -> bool:
            state, version = await self.load_invoice(invoice)
            if state is None:
                return False
            events = decide_expiry(state, self.clock())
            if not events:
                return False
            await self.store.append(
                invoice_stream(invoice), [encode(e, context.metadata()) for e in events], version
            )
            return True

        return await retrying(attempt)

    async def reconcile(self, invoice: str, context: Context) -> str:
        """Ask the gateway what became of the invoice's payment and apply it through the same
        path as a callback. Returns ``paid``, ``credited``, ``duplicate``, ``expired``,
        ``pending`` or ``unchanged``."""
        state, _ = await self.load_invoice(invoice)
        if state is None:
            raise errors.InvoiceNotFound()
        if state.created.source == "BALANCE":
            return "unchanged"  # paid at checkout; no gateway involved
        known = await self.gateway.status(state.created.gateway_reference)
        if known.status == GATEWAY_PAID and known.payment_id is not None:
            reference = state.created.gateway_reference
            payment = Payment(
                known.payment_id,
                known.paid_amount if known.paid_amount is not None else -1,
                known.method or "UNKNOWN",
                known.channel or "UNKNOWN",
                known.paid_at or self.clock(),
                # A gateway invoice or QR code is paid once: its reference names the payment
                # too, so a callback that arrives after this (or came before) is recognised.
                aliases=(reference,) if reference != known.payment_id else (),
            )
            return await self.record_payment(invoice, payment, context)
        if known.status == GATEWAY_EXPIRED:
            return "expired" if await self.expire_by_gateway(invoice, context) else "unchanged"
        return "pending"

    # -- platform actions --------------------------------------------------------------------

    async def cancel(
        self,
        actor: Actor,
        invoice: str,
        *,
        invoice_onmarket: str | None,
        buyer_username: str | None,
        context: Context,
    ) -> str:
        """Cancel a PENDING invoice, or start the refund of a PAID transaction. Returns the
        answer's message."""

        async def attempt() -> Event:
            state, version = await self._platform_invoice(actor, invoice)
            events = decide_cancel(
                state,
                invoice_onmarket=invoice_onmarket,
                buyer_username=buyer_username,
                by=actor.username,
                now=self.clock(),
            )
            await self.store.append(
                invoice_stream(invoice), [encode(e, context.metadata()) for e in events], version
            )
            return events[0]

        decided = await retrying(attempt)
        if isinstance(decided, InvoiceCanceled):
            await self._expire_at_gateway(invoice)
            return "INVOICE CANCELED"
        return "REFUND IN PROCESS"

    async def _expire_at_gateway(self, invoice: str) -> None:
        """Best effort: the cancel is committed whatever the gateway says, and a payment that
        still arrives is kept as the buyer's money (a late payment)."""
        state, _ = await self.load_invoice(invoice)
        assert state is not None
        try:
            await self.gateway.expire(state.created.gateway_reference)
        except Exception:
            log.exception(
                "gateway did not expire a canceled invoice",
                invoice=invoice,
                reference=state.created.gateway_reference,
            )

    async def complete(
        self, actor: Actor, invoice: str, *, invoice_onmarket: str | None, context: Context
    ) -> None:
        """Complete a PAID transaction: pay out the seller, commission and insurance."""

        async def attempt() -> None:
            state, version = await self._platform_invoice(actor, invoice)
            events = decide_completion(
                state, invoice_onmarket=invoice_onmarket, by=actor.username, now=self.clock()
            )
            await self.store.append(
                invoice_stream(invoice), [encode(e, context.metadata()) for e in events], version
            )

        await retrying(attempt)

    async def _platform_invoice(self, actor: Actor, invoice: str) -> tuple[Invoice, int]:
        # Decided on the id's prefix before looking: another service's invoice is refused the
        # same whether it exists or not, so a platform cannot probe the others' invoices.
        if actor.role != "admin" and not invoice.startswith(
            SERVICE_PREFIXES.get(actor.platform or "", "?")
        ):
            raise errors.Forbidden("this invoice belongs to another service")
        state, version = await self.load_invoice(invoice)
        if state is None:
            raise errors.InvoiceNotFound()
        if actor.role != "admin" and state.created.service != actor.platform:
            raise errors.Forbidden("this invoice belongs to another service")
        return state, version

    # -- refunds (the worker's command) ------------------------------------------------------

    async def complete_refund(self, requested: RecordedEvent, checkpoint: Checkpoint) -> bool:
        """Credit the buyer for a requested refund, moving ``checkpoint`` in the same commit."""
        data = requested.data
        invoice, invoice_onmarket = data["invoice"], data["invoice_onmarket"]
        context = Context("system:refund-worker", requested.metadata.get("request_id"))

        async def attempt() -> bool:
            state, version = await self.load_invoice(invoice)
            assert state is not None
            events = decide_refund_completion(state, invoice_onmarket, self.clock())
            if not events:
                await self.store.save_checkpoint(checkpoint.name, checkpoint.position)
                return False
            username = state.created.username
            _, balance_version = await self.load_balance(username)
            metadata = context.metadata(causation_id=requested.event_id)
            credit = BalanceCredited(
                username,
                events[0].amount,
                invoice,
                "refund",
                escrow(invoice),
                self.clock(),
            )
            await self.store.append_streams(
                [
                    StreamAppend(
                        invoice_stream(invoice), version, [encode(e, metadata) for e in events]
                    ),
                    StreamAppend(
                        balance_stream(username), balance_version, [encode(credit, metadata)]
                    ),
                ],
                checkpoint=checkpoint,
            )
            return True

        return await retrying(attempt)

    # -- balances and users ------------------------------------------------------------------

    async def top_up(self, actor: Actor, username: str, amount: int, context: Context) -> int:
        """Credit a buyer's balance (support and development); returns the new balance."""
        role = await self.user_role(username)
        if role is None:
            raise UserNotFound()
        if role != "buyer":
            raise NotABuyer()
        event = BalanceToppedUp(username, amount, actor.username, self.clock())
        # A credit cannot overdraw anything, so it needs no expected version.
        await self.store.append(balance_stream(username), [encode(event, context.metadata())], ANY)
        balance, _ = await self.load_balance(username)
        return balance.amount if balance else 0

    async def user_role(self, username: str) -> str | None:
        """The role an account was registered with; None if there is no such account."""
        registered, _ = await self.load(user_stream(username), _latest)
        assert registered is None or isinstance(registered, UserRegistered)
        return registered.role if registered else None

    async def user_exists(self, username: str) -> bool:
        return await self.store.stream_version(user_stream(username)) > 0

    async def register_user(
        self,
        username: str,
        role: str,
        platform: str | None,
        password_hash: str,
        context: Context,
        event_id: str | None = None,
    ) -> None:
        """Create an account; a username is taken once, for good."""
        event = UserRegistered(username, role, platform, password_hash, self.clock())
        try:
            await self.store.append(
                user_stream(username), [encode(event, context.metadata(), event_id)], NO_STREAM
            )
        except ConcurrencyError:
            raise UserExists() from None
