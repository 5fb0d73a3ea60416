"""Marking a PENDING invoice paid out of band (``POST /invoice/mark-paid``): the command and
its handler.

A platform account of the invoice's service, or an admin, records a payment the gateway never
saw (a bank transfer, say) with its reference and a reason. The decision is made on the
invoice's stream like any other, so a mark-paid racing a gateway payment or a cancel is settled
by the stream's version: exactly one of them changes the PENDING invoice, and a gateway payment
that loses is a late payment credited to the buyer. The gateway's invoice is then expired, best
effort, as a cancel does.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.application.commands import Actor, Command, Context
from service.application.handling import Application, Attempt
from service.application.platform import expire_at_gateway, platform_invoice
from service.domain import errors
from service.domain.mark_paid import decide_mark_paid
from service.domain.streams import invoice_stream

MARKED_PAID = "INVOICE MARKED AS PAID"


@dataclass(frozen=True, slots=True)
class MarkPaid(Command[str]):
    """Mark a PENDING invoice PAID (channel MANUAL); answers the message to show."""

    actor: Actor
    platform: str  # the body's: must name the invoice's service, for an admin too
    invoice: str
    reference: str
    reason: str


async def mark_paid(app: Application, command: MarkPaid, context: Context) -> str:
    async def attempt(tx: Attempt) -> None:
        state = await platform_invoice(tx, command.actor, command.invoice)
        if state.created.service != command.platform:
            # Only an admin gets here with another service's invoice: a slip of the back
            # office, refused rather than carried out on the wrong service's books.
            raise errors.Forbidden("this invoice belongs to another service")
        events = decide_mark_paid(
            state,
            reference=command.reference,
            reason=command.reason,
            by=command.actor.username,
            now=app.clock(),
        )
        tx.append(invoice_stream(command.invoice), events, context.metadata())

    await app.run(attempt)
    await expire_at_gateway(app, command.invoice)
    return MARKED_PAID
