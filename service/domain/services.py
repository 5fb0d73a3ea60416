"""The platforms an invoice can belong to and the ways it can be paid: the one place they are
named, with the prefix each platform's invoice ids start with (OM, OD, OT).

A platform account acts only on its own platform's invoices, and the id's prefix says which
platform that is before anything is read.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

ONMARKET: Final = "ONMARKET"
ONDELIVERY: Final = "ONDELIVERY"
ONTICKET: Final = "ONTICKET"
SERVICES: Final = (ONMARKET, ONDELIVERY, ONTICKET)
SERVICE_PREFIXES: Final = MappingProxyType({ONMARKET: "OM", ONDELIVERY: "OD", ONTICKET: "OT"})

XENDIT: Final = "XENDIT"
BALANCE: Final = "BALANCE"
QRIS: Final = "QRIS"
SOURCES: Final = (XENDIT, BALANCE, QRIS)


def belongs_to(invoice: str, service: str | None) -> bool:
    """Whether an invoice id is one of ``service``'s, by its prefix alone."""
    prefix = SERVICE_PREFIXES.get(service or "")
    return prefix is not None and invoice.startswith(prefix)
