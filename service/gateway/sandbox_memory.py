"""What the sandbox gateway remembers of its payments: in its process, or shared by processes.

A real gateway is one service for every process of ours; the sandbox stands in for it inside
each process. With one process its memory is a dict (``ProcessMemory``). With ``serve --workers
N`` the workers share it through a folder beside the database (``FolderMemory``), so that the
sandbox still takes one payment per invoice however the buyer's Pay presses are spread over the
workers, and reconciliation, in whichever worker runs it, knows every payment taken.

Both take a payment in one step that no other taker can come between: the dict with no ``await``
between the check and the store, the folder by linking the payment's file to its name, which
fails for all but the first process (``link`` never replaces a file).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Protocol

from service.gateway.port import EXPIRED, PAID, PENDING, GatewayStatus


class SandboxMemory(Protocol):
    def status(self, reference: str) -> GatewayStatus:
        """What is known of ``reference``: PENDING if nothing happened to it."""

    def take(self, paid: GatewayStatus) -> tuple[GatewayStatus, bool]:
        """Record the payment ``paid`` unless its reference took one already: the payment the
        reference holds afterwards, and whether it is ``paid``."""

    def record(self, paid: GatewayStatus) -> None:
        """Record the payment whatever the reference held (tests staging a gateway's state)."""

    def expire(self, reference: str) -> None:
        """Expire ``reference`` unless it was paid."""


class ProcessMemory:
    """This process's own memory: a restart, or another process, does not know it."""

    def __init__(self) -> None:
        self._known: dict[str, GatewayStatus] = {}

    def status(self, reference: str) -> GatewayStatus:
        return self._known.get(reference, GatewayStatus(reference, PENDING))

    def take(self, paid: GatewayStatus) -> tuple[GatewayStatus, bool]:
        held = self._known.get(paid.reference)
        if held is not None and held.status == PAID:
            return held, False
        self._known[paid.reference] = paid
        return paid, True

    def record(self, paid: GatewayStatus) -> None:
        self._known[paid.reference] = paid

    def expire(self, reference: str) -> None:
        if self.status(reference).status == PENDING:
            self._known[reference] = GatewayStatus(reference, EXPIRED)


def sandbox_folder(database: str) -> Path:
    """Where the workers of one machine share the sandbox's memory: beside an SQLite file, or
    for a database server's URL a folder of the temporary directory named after the URL (the
    sandbox is for development: nodes on other machines keep their own)."""
    if "://" not in database:
        return Path(f"{database}.sandbox")
    digest = hashlib.sha256(database.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"invoice-sandbox-{digest}"


class FolderMemory:
    """Files in ``folder``, one ``<reference>.paid`` (the payment, JSON) or ``.expired`` (empty)
    per reference something happened to; read and written by every process that shares it."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def status(self, reference: str) -> GatewayStatus:
        paid = self._read_paid(reference)
        if paid is not None:
            return paid
        if self._path(reference, "expired").exists():
            return GatewayStatus(reference, EXPIRED)
        return GatewayStatus(reference, PENDING)

    def take(self, paid: GatewayStatus) -> tuple[GatewayStatus, bool]:
        # Written in full under a name of its own, then linked to the payment's name: the link
        # fails if that name exists, so exactly one taker wins, and a reader never finds the
        # file half written.
        written = self._written(paid)
        try:
            os.link(written, self._path(paid.reference, "paid"))
        except FileExistsError:  # another process (or this one) took a payment first
            held = self._read_paid(paid.reference)
            assert held is not None
            return held, False
        finally:
            written.unlink()
        return paid, True

    def record(self, paid: GatewayStatus) -> None:
        self._written(paid).replace(self._path(paid.reference, "paid"))

    def expire(self, reference: str) -> None:
        if self._read_paid(reference) is None:
            self._path(reference, "expired").touch()

    def _path(self, reference: str, suffix: str) -> Path:
        # References are the sandbox's own (hex digits, or ``qr_`` and a UUID): safe as names.
        return self._folder / f"{reference}.{suffix}"

    def _written(self, paid: GatewayStatus) -> Path:
        """``paid`` written to a file of this taker's own, beside its final name."""
        path = self._path(paid.reference, f"paid.{os.getpid()}.{secrets.token_hex(4)}")
        path.write_text(_encode(paid), encoding="utf-8")
        return path

    def _read_paid(self, reference: str) -> GatewayStatus | None:
        try:
            return _decode(self._path(reference, "paid").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None


def _encode(paid: GatewayStatus) -> str:
    fields = asdict(paid)
    fields["paid_at"] = paid.paid_at.isoformat() if paid.paid_at else None
    return json.dumps(fields)


def _decode(text: str) -> GatewayStatus:
    fields = json.loads(text)
    if fields["paid_at"] is not None:
        fields["paid_at"] = datetime.fromisoformat(fields["paid_at"])
    return GatewayStatus(**fields)
