"""What every command carries: the ``Command`` base, who asks (``Actor``) and in which request
(``Context``).

A command is a frozen dataclass named as an order (``Checkout``, ``TopUp``); its type parameter
is what its handler answers, so ``InvoiceService.handle`` is typed by the command it is given.
The context is not part of the order: it is recorded in the metadata of every event the command
appends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T", covariant=True)


class Command(Generic[T]):
    """An order to the application whose handler answers a ``T``."""

    __slots__ = ()


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
