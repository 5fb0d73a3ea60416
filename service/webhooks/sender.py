"""The sender: delivers due webhook messages and records every attempt in the log.

Each message is sent by one sender at a time: on SQLite one process runs the sender
(``run_single_active``); on PostgreSQL every process does, and each takes only the messages it
has claimed (``service.webhooks.claims``). It looks for due messages when woken by a newly
queued or resent message (a subscription: at once in this process, within the store's poll
interval from another) and every ``poll_interval`` for retries that came due. Up to
``concurrency`` deliveries are in flight; each is a POST with aiohttp (``timeout``, no
redirects), signed per Standard Webhooks with every secret that signs now. Its result is
recorded as a ``WebhookDeliveryAttempted`` at the message's version as read before sending: a
sender that died between its send and its record leaves the message due, and the next sender
(on PostgreSQL once the dead one's claim ran out) sends it again with the same ``webhook-id``
(receivers deduplicate on it); a stale view or a claim that ran out mid-send never makes an
attempt count twice, since only one record at that version is taken.

A 410 disables the endpoint; so does failing without a success for ``disable_after`` (an
error is logged). The URL is checked against the SSRF rules again at each send, since what its
name resolves to can change: its form before, its addresses as the connection resolves them
(``GuardedResolver``), so the address checked is the one connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog

from eventstore import EventStore
from service.application import Context, InvoiceService
from service.application.webhooks import (
    DisableFailingEndpoint,
    RecordWebhookAttempt,
    load_endpoint,
    load_message,
)
from service.domain.webhook_delivery import DELIVERED, GONE, PENDING, AttemptResult
from service.domain.webhook_endpoint import WebhookUrlRefused
from service.views import ReadModel
from service.webhooks.claims import WebhookClaims
from service.webhooks.signing import SecretBox, SecretUnreadable, signatures
from service.webhooks.ssrf import AddressRefused, GuardedResolver, check_before_send
from service.webhooks.stats import WebhookStats

log = structlog.get_logger("service.webhooks")

RESPONSE_KEPT = 1024  # bytes of the receiver's answer kept in the delivery log
UNREADABLE_SECRET = "the endpoint's secret cannot be opened with webhook_secret_key"
WAKE_TYPES = ("WebhookMessageQueued", "WebhookMessageResent")
USER_AGENT = "invoice-service-webhooks/1"


class WebhookSender:
    def __init__(
        self,
        store: EventStore,
        service: InvoiceService,
        views: ReadModel,
        box: SecretBox,
        claims: WebhookClaims,
        *,
        schedule: tuple[float, ...],
        timeout: float,
        concurrency: int,
        poll_interval: float,
        disable_after: timedelta,
        development: bool,
        clock: Callable[[], datetime],
        stats: WebhookStats,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.service, self.views, self.box = store, service, views, box
        self.claims = claims
        self.schedule, self.timeout, self.concurrency = schedule, timeout, concurrency
        self.poll_interval, self.disable_after = poll_interval, disable_after
        self.development, self.clock, self.stats, self.wall = development, clock, stats, wall
        self._jitter = random.Random()
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Deliver until cancelled."""
        head = await self.store.head_position()
        waker = asyncio.create_task(self._wake_on_new(head))
        resolver = GuardedResolver(development=self.development)
        connector = aiohttp.TCPConnector(limit=self.concurrency, resolver=resolver)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                try:
                    while True:
                        await self._round(session)
                finally:
                    # Before the session closes: a delivery whose connection the close cut
                    # would otherwise try again on the closed session and log an error.
                    await _cancelled(list(self._in_flight.values()))
        finally:
            await _cancelled([waker])

    async def _wake_on_new(self, head: int) -> None:
        async for _ in self.store.subscribe("webhook-sender-wake", head, types=WAKE_TYPES):
            self._wake.set()

    async def _round(self, session: aiohttp.ClientSession) -> None:
        self._wake.clear()
        room = self.concurrency - len(self._in_flight)
        started = 0
        if room > 0:
            for message in await self._take(room):
                if message in self._in_flight:
                    continue  # never asked for (``busy``); kept from starting it twice
                task = asyncio.create_task(self._deliver_logged(session, message))
                self._in_flight[message] = task
                task.add_done_callback(functools.partial(self._done, message))
                started += 1
        if started and len(self._in_flight) >= self.concurrency:
            await asyncio.wait(list(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):  # not wait_for: it can drop a cancel
                await self._wake.wait()

    async def _take(self, room: int) -> list[str]:
        """The messages to start now; none when the database fails to answer (logged): the
        deliveries in flight go on, and the next round asks again."""
        try:
            return await self.claims.take(self.clock(), room, self._in_flight.keys())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook messages could not be taken: trying again")
            return []

    def _done(self, message: str, _: asyncio.Task[None]) -> None:
        self._in_flight.pop(message, None)
        self._wake.set()  # a slot is free, and a retry recorded at once may be due

    async def _deliver_logged(self, session: aiohttp.ClientSession, message: str) -> None:
        # Not released when cancelled (the sender stopping): the claim runs out instead, and
        # nothing waits on the database while the app shuts down.
        try:
            await self.deliver(session, message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery failed to run", message=message)
            await asyncio.sleep(self.poll_interval)  # claimed meanwhile: no other retries at once
        try:
            await self.claims.release(message)
        except Exception:  # the claim runs out instead
            log.warning("webhook claim not released", message=message, exc_info=True)

    async def deliver(self, session: aiohttp.ClientSession, message_id: str) -> str | None:
        """One attempt of a due message; answers the recorded outcome (None: nothing sent,
        or another sender recorded first)."""
        state, version = await load_message(self.service, message_id)
        now = self.clock()
        if state is None or state.status != PENDING or state.next_attempt_at is None:
            return None
        if state.next_attempt_at > now:
            return None
        endpoint = await load_endpoint(self.service, state.endpoint)
        if endpoint is None or endpoint.deleted or endpoint.disabled:
            return None
        try:
            secrets = self._opened(endpoint.signing_secrets(now))
        except SecretUnreadable:
            # A failed attempt, not an error that retries at every poll for ever: the schedule,
            # the delivery log and disabling after days of failures apply as to any failure.
            log.error(UNREADABLE_SECRET, endpoint=state.endpoint, message=message_id)
            result = AttemptResult(now, 0, 0, "", UNREADABLE_SECRET)
        else:
            body = state.body.encode()
            result = await self._post(session, endpoint.url, message_id, body, secrets)
        recorded = await self.service.handle(
            RecordWebhookAttempt(message_id, version, result, self.schedule, self._jitter.random()),
            Context("system:webhook-sender"),
        )
        if recorded is None:
            self.stats.count("lost_race")
            return None
        outcome = recorded.outcome if recorded.outcome != PENDING else "retrying"
        self.stats.count(outcome)
        if recorded.outcome != DELIVERED:
            await self._maybe_disable(state.endpoint, result)
        return recorded.outcome

    def _opened(self, sealed: list[str]) -> list[str]:
        """The secrets that sign now, opened. The current one must open (``SecretUnreadable``);
        a previous one in its grace period that does not is left out: after a change of
        ``webhook_secret_key``, rotating gives a current secret the key opens, and the one
        before it can sign no more."""
        current, *previous = sealed
        opened = [self.box.open(current)]
        for old in previous:
            with contextlib.suppress(SecretUnreadable):
                opened.append(self.box.open(old))
        return opened

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        message_id: str,
        body: bytes,
        secrets: list[str],
    ) -> AttemptResult:
        at = self.clock()
        started = time.perf_counter()

        def result(
            status: int, response: str, error: str = "", retry_after: float | None = None
        ) -> AttemptResult:
            duration = round((time.perf_counter() - started) * 1000)
            return AttemptResult(at, status, duration, response, error, retry_after)

        try:
            check_before_send(url, development=self.development)
        except WebhookUrlRefused as refused:
            return result(0, "", f"refused: {refused.detail}")
        timestamp = int(self.wall())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures(secrets, message_id, timestamp, body),
        }
        for fresh in (False, True):
            try:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    kept = await _first_bytes(answer.content, RESPONSE_KEPT)
                    retry_after = _retry_after(answer.headers.get("Retry-After"), self.wall())
                    return result(answer.status, kept.decode("utf-8", "replace"), "", retry_after)
            except aiohttp.ServerDisconnectedError as error:
                # A kept-alive connection the receiver had closed meanwhile: sent again once,
                # at once, on a new one (a delivery may arrive twice; receivers keep webhook-id).
                if fresh:
                    return result(0, "", f"{type(error).__name__}: {error}"[:RESPONSE_KEPT])
            except TimeoutError:
                return result(0, "", f"timeout after {self.timeout:g} s")
            except aiohttp.ClientConnectorError as error:
                if isinstance(error.os_error, AddressRefused):
                    return result(0, "", f"refused: {error.os_error}")
                return result(0, "", f"{type(error).__name__}: {error}"[:RESPONSE_KEPT])
            except aiohttp.ClientError as error:
                return result(0, "", f"{type(error).__name__}: {error}"[:RESPONSE_KEPT])
        raise AssertionError("unreachable: the second try returns")

    async def _maybe_disable(self, endpoint: str, result: AttemptResult) -> None:
        reason = None
        if result.status == GONE:
            reason = "the endpoint answered 410 Gone"
        else:
            row = await self.views.webhook_endpoint(endpoint)
            since = row.failing_since if row is not None else None
            if since is not None and result.at - since >= self.disable_after:
                reason = f"failing since {since.isoformat()}"
        if reason is None:
            return
        changed = await self.service.handle(
            DisableFailingEndpoint(endpoint, reason), Context("system:webhook-sender")
        )
        if changed:
            log.error("webhook endpoint disabled", endpoint=endpoint, reason=reason)


async def _first_bytes(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of an answer's body: a body that arrives in pieces is read on
    until ``limit`` or its end (one ``read`` gives only what has arrived so far)."""
    kept = bytearray()
    while len(kept) < limit:
        piece = await content.read(limit - len(kept))
        if not piece:
            break
        kept += piece
    return bytes(kept)


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they end. Cancelled again while they run on: on Python
    3.11 a ``wait_for`` whose inner wait ends as the cancel arrives drops the cancel, and the
    subscription would go on waiting for ever."""
    while True:
        running = [task for task in tasks if not task.done()]
        if not running:
            return
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=0.1)


def _retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from now: a number of seconds, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit also takes "²", which float refuses
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)
