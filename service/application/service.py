"""The application's front door: ``InvoiceService.handle(command, context)`` carries out any
command by its handler, and a few reads answer from the log rather than from a view.

Each command family keeps its commands and handlers in a module of its own (``checkout``,
``payments``, ``platform``, ``mark_paid``, ``accounts``); ``HANDLERS`` is where a command meets
its handler, so a new command is a dataclass, a handler and one line here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar, cast

from service.application import accounts, checkout, mark_paid, payments, platform, webhooks
from service.application.commands import Command, Context
from service.application.handling import Application
from service.domain.accounts import Account, evolve_account
from service.domain.invoice import Invoice, evolve
from service.domain.streams import invoice_stream, user_stream
from service.records import decode
from service.views.status_history import StatusHistory, record_change

T = TypeVar("T")
Handler = Callable[[Application, Any, Context], Awaitable[Any]]

HANDLERS: Mapping[type[Command[Any]], Handler] = MappingProxyType(
    {
        checkout.Checkout: checkout.checkout,
        payments.RecordPayment: payments.record_payment,
        payments.ExpireByGateway: payments.expire_by_gateway,
        payments.ExpireIfDue: payments.expire_if_due,
        payments.Reconcile: payments.reconcile,
        platform.CancelTransaction: platform.cancel,
        platform.CompleteTransaction: platform.complete,
        platform.CompleteBatch: platform.complete_batch,
        platform.CompleteRefund: platform.complete_refund,
        mark_paid.MarkPaid: mark_paid.mark_paid,
        accounts.RegisterUser: accounts.register_user,
        accounts.TopUp: accounts.top_up,
        accounts.DisableUser: accounts.disable_user,
        accounts.EnableUser: accounts.enable_user,
        webhooks.CreateWebhookEndpoint: webhooks.create_endpoint,
        webhooks.UpdateWebhookEndpoint: webhooks.update_endpoint,
        webhooks.RotateWebhookSecret: webhooks.rotate_secret,
        webhooks.DeleteWebhookEndpoint: webhooks.delete_endpoint,
        webhooks.DisableFailingEndpoint: webhooks.disable_failing,
        webhooks.QueueWebhookMessages: webhooks.queue_messages,
        webhooks.RecordWebhookAttempt: webhooks.record_attempt,
        webhooks.ResendWebhookMessages: webhooks.resend_messages,
    }
)


class InvoiceService(Application):
    """The application: every state change of the service is a command handled here."""

    async def handle(self, command: Command[T], context: Context) -> T:
        """Carry out ``command`` on behalf of ``context``; answers what its handler does."""
        return cast(T, await HANDLERS[type(command)](self, command, context))

    async def load_invoice(self, invoice: str) -> tuple[Invoice | None, int]:
        return await self.load(invoice_stream(invoice), evolve)

    async def account(self, username: str) -> Account | None:
        """The account as its stream tells it; None if there is no such account."""
        account, _ = await self.load(user_stream(username), evolve_account)
        return account

    async def user_role(self, username: str) -> str | None:
        """The role an account was registered with; None if there is no such account."""
        account = await self.account(username)
        return account.role if account else None

    async def user_exists(self, username: str) -> bool:
        return await self.store.stream_version(user_stream(username)) > 0

    async def invoice_as_of(
        self, invoice: str, *, at: datetime | None = None, position: int | None = None
    ) -> tuple[Invoice, StatusHistory, datetime] | None:
        """The invoice as it stood at time ``at`` or just after log position ``position``, by
        replaying its stream with the same ``evolve`` as the live view, with its status history
        up to then; None before it existed. Also returns the moment to show it at: ``at``, or
        the commit time of ``position``."""
        moment = at if position is None else await self.views.commit_time(position)
        state: Invoice | None = None
        history: StatusHistory = []
        async for recorded in self.store.read_stream(invoice_stream(invoice)):
            if (at is not None and recorded.recorded_at > at) or (
                position is not None and recorded.position > position
            ):
                break
            before, state = state, evolve(state, decode(recorded))
            record_change(history, before, state, recorded)
        if state is None or moment is None:
            return None
        return state, history, moment

    async def status_history(self, invoice: str) -> StatusHistory:
        """The invoice's whole status history from its stream: for a view row written before
        the view kept it (until ``python -m service rebuild``)."""
        state: Invoice | None = None
        history: StatusHistory = []
        async for recorded in self.store.read_stream(invoice_stream(invoice)):
            before, state = state, evolve(state, decode(recorded))
            record_change(history, before, state, recorded)
        return history
