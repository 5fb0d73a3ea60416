"""Webhook commands: a platform's endpoints (create, update, rotate the secret, delete), and
its messages (queue from the log, record an attempt, resend, recover since a time).

Each is decided on its own stream with optimistic concurrency, as every command is. Secrets
arrive sealed (``service.webhooks.signing.SecretBox``): the log never holds one in clear. An
actor with a ``service`` acts on that service's endpoints and messages only; None is an admin,
who may act on any (never creating one: an endpoint belongs to a platform).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventstore import NO_STREAM, Checkpoint, ConcurrencyError
from service.application.commands import Command, Context
from service.application.handling import Application, Attempt
from service.domain.streams import webhook_endpoint_stream, webhook_message_stream
from service.domain.webhook_delivery import (
    AttemptResult,
    Message,
    WebhookMessageNotFound,
    decide_attempt,
    decide_resend,
    evolve_message,
)
from service.domain.webhook_endpoint import (
    Endpoint,
    decide_auto_disable,
    decide_creation,
    decide_deletion,
    decide_rotation,
    decide_update,
    evolve_endpoint,
    visible,
)
from service.domain.webhook_events import WebhookDeliveryAttempted, WebhookMessageQueued
from service.records import encode


@dataclass(frozen=True, slots=True)
class CreateWebhookEndpoint(Command[Endpoint]):
    endpoint: str
    service: str
    url: str
    event_types: tuple[str, ...]
    description: str
    sealed_secret: str
    by: str


@dataclass(frozen=True, slots=True)
class UpdateWebhookEndpoint(Command[Endpoint]):
    endpoint: str
    service: str | None
    url: str | None
    event_types: tuple[str, ...] | None
    description: str | None
    disabled: bool | None
    by: str


@dataclass(frozen=True, slots=True)
class RotateWebhookSecret(Command[Endpoint]):
    endpoint: str
    service: str | None
    sealed_secret: str
    by: str


@dataclass(frozen=True, slots=True)
class DeleteWebhookEndpoint(Command[None]):
    endpoint: str
    service: str | None
    by: str


@dataclass(frozen=True, slots=True)
class DisableFailingEndpoint(Command[bool]):
    """The sender disables an endpoint that is gone (410) or failing for days; answers
    whether it changed anything."""

    endpoint: str
    reason: str


@dataclass(frozen=True, slots=True)
class QueueWebhookMessages(Command[int]):
    """New messages derived from one event of the log, appended with the outbox's
    ``checkpoint`` moved past that event in the same commit; answers how many."""

    messages: tuple[WebhookMessageQueued, ...]
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class RecordWebhookAttempt(Command[WebhookDeliveryAttempted | None]):
    """An attempt's result, decided on the message's stream as the sender read it
    (``version``): a rival sender that recorded first makes this one lose."""

    message: str
    version: int
    result: AttemptResult
    schedule: tuple[float, ...]
    jitter: float


@dataclass(frozen=True, slots=True)
class ResendWebhookMessages(Command[int]):
    """Send these messages again (delivered or not), due now; answers how many."""

    messages: tuple[str, ...]
    service: str | None
    by: str


async def _endpoint(tx: Attempt, endpoint: str, service: str | None) -> Endpoint:
    return visible(await tx.load(webhook_endpoint_stream(endpoint), evolve_endpoint), service)


async def create_endpoint(
    app: Application, command: CreateWebhookEndpoint, context: Context
) -> Endpoint:
    stream = webhook_endpoint_stream(command.endpoint)
    events = decide_creation(
        None,
        command.endpoint,
        command.service,
        command.url,
        command.event_types,
        command.description,
        command.sealed_secret,
        command.by,
        app.clock(),
    )

    async def attempt(tx: Attempt) -> None:
        tx.append(stream, events, context.metadata(), expected=NO_STREAM)

    await app.run(attempt)
    endpoint, _ = await app.load(stream, evolve_endpoint)
    assert endpoint is not None
    return endpoint


async def update_endpoint(
    app: Application, command: UpdateWebhookEndpoint, context: Context
) -> Endpoint:
    stream = webhook_endpoint_stream(command.endpoint)

    async def attempt(tx: Attempt) -> Endpoint:
        state = await _endpoint(tx, command.endpoint, command.service)
        events = decide_update(
            state,
            url=command.url,
            event_types=command.event_types,
            description=command.description,
            disabled=command.disabled,
            by=command.by,
            now=app.clock(),
        )
        tx.append(stream, events, context.metadata())
        for event in events:
            state = evolve_endpoint(state, event)
        return state

    return await app.run(attempt)


async def rotate_secret(
    app: Application, command: RotateWebhookSecret, context: Context
) -> Endpoint:
    stream = webhook_endpoint_stream(command.endpoint)

    async def attempt(tx: Attempt) -> Endpoint:
        state = await _endpoint(tx, command.endpoint, command.service)
        events = decide_rotation(state, command.sealed_secret, command.by, app.clock())
        tx.append(stream, events, context.metadata())
        return evolve_endpoint(state, events[0])

    return await app.run(attempt)


async def delete_endpoint(
    app: Application, command: DeleteWebhookEndpoint, context: Context
) -> None:
    stream = webhook_endpoint_stream(command.endpoint)

    async def attempt(tx: Attempt) -> None:
        state = await _endpoint(tx, command.endpoint, command.service)
        tx.append(stream, decide_deletion(state, command.by, app.clock()), context.metadata())

    await app.run(attempt)


async def disable_failing(
    app: Application, command: DisableFailingEndpoint, context: Context
) -> bool:
    stream = webhook_endpoint_stream(command.endpoint)

    async def attempt(tx: Attempt) -> bool:
        state = await tx.load(stream, evolve_endpoint)
        if state is None:
            return False
        events = decide_auto_disable(state, command.reason, app.clock())
        tx.append(stream, events, context.metadata())
        return bool(events)

    return await app.run(attempt, patient=True)


async def queue_messages(app: Application, command: QueueWebhookMessages, context: Context) -> int:
    async def attempt(tx: Attempt) -> int:
        for message in command.messages:
            # The id is the message's: a retry after a crash writes nothing new.
            tx.append(
                webhook_message_stream(message.message),
                [message],
                context.metadata(),
                expected=NO_STREAM,
                event_ids=[message.message],
            )
        return len(command.messages)

    return await app.run(attempt, checkpoint=command.checkpoint, patient=True)


async def record_attempt(
    app: Application, command: RecordWebhookAttempt, context: Context
) -> WebhookDeliveryAttempted | None:
    """The attempt as recorded; None if another sender recorded one first (the message's
    stream moved past the version this sender read): not retried, that turn was taken."""
    stream = webhook_message_stream(command.message)
    state, version = await app.load(stream, evolve_message)
    if state is None:
        raise WebhookMessageNotFound()
    if version != command.version:
        return None
    decided = decide_attempt(state, command.result, command.schedule, command.jitter)
    try:
        await app.store.append(stream, [encode(decided, context.metadata())], version)
    except ConcurrencyError:
        return None
    return decided


async def resend_messages(
    app: Application, command: ResendWebhookMessages, context: Context
) -> int:
    count = 0
    for message in command.messages:
        await _resend_one(app, message, command, context)
        count += 1
    return count


async def _resend_one(
    app: Application, message: str, command: ResendWebhookMessages, context: Context
) -> None:
    stream = webhook_message_stream(message)

    async def attempt(tx: Attempt) -> None:
        state = await tx.load(stream, evolve_message)
        if state is None or (command.service is not None and state.service != command.service):
            raise WebhookMessageNotFound()
        tx.append(stream, decide_resend(state, command.by, app.clock()), context.metadata())

    await app.run(attempt)


async def load_message(app: Application, message: str) -> tuple[Message | None, int]:
    return await app.load(webhook_message_stream(message), evolve_message)


async def load_endpoint(app: Application, endpoint: str) -> Endpoint | None:
    state, _ = await app.load(webhook_endpoint_stream(endpoint), evolve_endpoint)
    return state
