"""A PostgreSQL database of a test's own: created with a unique name, dropped after.

The server is the one at ``INVOICE_TEST_POSTGRES`` (an admin URL; by default the local
``postgres`` superuser over TCP, trust auth). Nothing is skipped when it cannot be reached: the
connection's error fails the test, as it must in CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL = os.environ.get("INVOICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    """The admin URL with ``name`` as its database."""
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def fresh_database(prefix: str = "test") -> AsyncIterator[str]:
    """A new empty database (its URL), dropped on the way out, whatever is still connected."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield database_url(name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
