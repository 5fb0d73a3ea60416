"""What the commands share: opening the service's store wherever it lives, and who ran them."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from eventstore import EventStore, open_store
from eventstore.backends import is_url
from service.app import store_options
from service.config import Config
from service.views.backends import projectors_for


async def open_service_store(config: Config) -> EventStore:
    """The store at ``config.database`` with the service's views, as ``serve`` opens it."""
    return await open_store(
        config.database, projectors=projectors_for(config.database), **store_options(config)
    )


def missing_database(config: Config) -> bool:
    """Say so and return True when the settings name an SQLite file that does not exist (a
    database server's URL is checked by connecting to it)."""
    if is_url(config.database) or Path(config.database).exists():
        return False
    print(f"error: {config.database} does not exist", file=sys.stderr)
    return True


def cli_actor() -> str:
    """Who the log records as having run a command: the operator's login name."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:  # no login name in this environment (a bare container)
        return "cli"
