"""The read side's interface: every question the service asks of its views, by name.

Handlers, workers, the authenticator and the CLI ask these and nothing else; no SQL (nor any
other backend's query text) leaves the backend's implementation (``service.views.sqlite``,
``service.views.postgresql``). A backend implements ``ReadModel`` over its own views; what is
visible to whom (an admin sees every invoice, a platform the invoices of its service, a buyer
their own) is the implementation's job, so every backend applies the same rules in its own
queries.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.domain.invoice import Invoice


class Viewer(Protocol):
    """Who reads: any object with these attributes (the application's ``Actor`` is one)."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def platform(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class VisibleInvoice:
    """An invoice a viewer may see: its creation number (the API's ``id``), its state and its
    status history (``service.views.status_history``; None in a view row written before the
    history was kept, until a rebuild: the caller then folds it from the invoice's stream)."""

    seq: int
    state: Invoice
    status_history: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One posting of the ledger to an account, as ``/balance`` lists it."""

    position: int
    account: str
    amount: int
    event_type: str
    invoice: str | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    """An account as the authenticator checks it."""

    username: str
    role: str
    platform: str | None
    password_hash: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class HourlyVolume:
    """The invoices created in one hour (``hour``: UTC, ``YYYY-MM-DDTHH``) and their total."""

    hour: str
    invoices: int
    amount: int


@dataclass(frozen=True, slots=True)
class WebhookEndpointRow:
    """A webhook endpoint as the API lists it (never its secret)."""

    endpoint: str
    service: str
    url: str
    event_types: tuple[str, ...]
    description: str
    disabled: bool
    disabled_reason: str
    failing_since: datetime | None  # the first failure since the last success or re-enabling
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookAttemptRow:
    """One delivery attempt, as the delivery log shows it."""

    attempt: int
    at: datetime
    status: int
    duration_ms: int
    response: str
    error: str
    outcome: str
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookMessageRow:
    """A webhook message and its attempts, oldest first."""

    message: str
    endpoint: str
    service: str
    invoice: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    queued_at: datetime
    attempt_log: list[WebhookAttemptRow]


@dataclass(frozen=True, slots=True)
class WebhookBacklog:
    """The messages still to deliver to enabled endpoints: how many, the oldest's queue time,
    and the earliest next attempt's time (None when there is none). Once that time has passed,
    a message is due: a sender that keeps up leaves none due for long."""

    pending: int
    oldest_queued_at: datetime | None
    earliest_next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailedWebhookRow:
    """A message that failed for good, with its endpoint's URL and its last attempt."""

    message: str
    url: str
    event_type: str
    failed_at: datetime
    status: int  # the last attempt's HTTP status; 0 when no answer came
    error: str  # why no answer came ('' when one did)
    endpoint_disabled: bool  # a resend waits until the endpoint is enabled again


class ReadModel(Protocol):
    """The service's views, asked by name."""

    async def invoice(self, invoice_id: str, viewer: Viewer) -> VisibleInvoice | None:
        """The invoice, if it exists and ``viewer`` may see it."""
        ...

    async def invoice_by_waybill(
        self, waybill_number: str, viewer: Viewer
    ) -> VisibleInvoice | None:
        """The newest invoice ``viewer`` may see that ships under ``waybill_number``."""
        ...

    async def invoice_exists(self, invoice_id: str) -> bool:
        """Whether the invoice exists, whoever may see it."""
        ...

    async def waybill_exists(self, waybill_number: str) -> bool:
        """Whether any invoice ships under ``waybill_number``, whoever may see it."""
        ...

    async def invoice_by_gateway_reference(self, reference: str) -> Invoice | None:
        """The invoice the gateway knows by ``reference`` (its ``xendit_invoice``)."""
        ...

    async def balances(self, username: str) -> tuple[int, int]:
        """The user's buyer balance and seller balance (0 for an account never posted to)."""
        ...

    async def ledger_entries(self, username: str, limit: int) -> list[LedgerEntry]:
        """The user's latest ``limit`` postings (buyer and seller accounts), newest first."""
        ...

    async def commit_time(self, position: int) -> datetime | None:
        """When the event at ``position`` (or the last one before it) was committed; None
        before the first event."""
        ...

    async def streams_holding(self, event_ids: Collection[str]) -> set[str]:
        """The ids of the streams that hold any of these event ids."""
        ...

    async def user(self, username: str) -> UserRecord | None:
        """The account of ``username``, if there is one (a lookup by key: cheap enough to ask
        on every authenticated request)."""
        ...

    async def due_invoices(self, now: datetime, limit: int) -> list[str]:
        """Up to ``limit`` PENDING invoices whose expiry is at or before ``now``, the earliest
        expiry first."""
        ...

    async def invoice_status_counts(self) -> dict[str, int]:
        """How many invoices the view holds in each status it holds (as written: a PENDING one
        past its expiry counts PENDING until its InvoiceExpired is written)."""
        ...

    async def refund_backlog(self) -> int:
        """How many transactions wait for their refund (REFUND_IN_PROCESS); their invoice
        stays PAID until every transaction is settled."""
        ...

    async def oldest_refund_requested_at(self) -> datetime | None:
        """When the refund waiting longest (REFUND_IN_PROCESS) was asked for, from its
        RefundRequested in the log; None when no refund waits."""
        ...

    async def hourly_volume(self, since: datetime) -> list[HourlyVolume]:
        """The invoices created at or after ``since``, by the UTC hour of their creation,
        oldest hour first; hours without one are left out."""
        ...

    async def reconcile_candidates(self, since: datetime) -> list[str]:
        """The invoices with a gateway payment whose callbacks may have been lost: every
        PENDING one, and every one EXPIRED or CANCELED, or marked paid out of band (paid with no
        gateway payment seen), whose expiry is at or after ``since`` (a payment may have arrived
        late), in creation order."""
        ...

    # -- webhooks --------------------------------------------------------------------------------

    async def webhook_endpoints(self, service: str | None) -> list[WebhookEndpointRow]:
        """The endpoints not deleted of ``service`` (None: of every service), oldest first."""
        ...

    async def webhook_endpoint(self, endpoint: str) -> WebhookEndpointRow | None:
        """The endpoint, unless there is none or it was deleted."""
        ...

    async def webhook_messages(
        self,
        service: str | None,
        *,
        endpoint: str | None,
        status: str | None,
        invoice: str | None,
        limit: int,
    ) -> list[WebhookMessageRow]:
        """The latest ``limit`` messages matching every filter given, newest first, each with
        its attempts."""
        ...

    async def due_webhook_messages(self, now: datetime, limit: int) -> list[str]:
        """Up to ``limit`` pending messages due at ``now`` to enabled endpoints, the earliest
        due first."""
        ...

    async def webhook_backlog(self) -> WebhookBacklog:
        """The messages still pending to enabled endpoints: their count, the oldest's queue
        time and the earliest next attempt's time, in one query (the metrics' gauges and the
        operator page ask at once)."""
        ...

    async def latest_failed_webhooks(self, limit: int) -> list[FailedWebhookRow]:
        """The ``limit`` messages of every service that failed last (by their last attempt's
        time, latest first), to endpoints not deleted."""
        ...

    async def failed_webhook_messages(self, endpoint: str, since: datetime) -> list[str]:
        """The failed messages of ``endpoint`` queued at or after ``since``, oldest first."""
        ...
