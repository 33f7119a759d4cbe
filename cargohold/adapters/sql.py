"""What the two SQL drivers of the views (and the event store's configuration) share.

The port they implement, ``Database`` with its ``Cursor``, is in ``domain/ports.py``; the
drivers are ``adapters/sqlite.py`` and ``adapters/postgres.py`` (the only module that
imports psycopg). Nothing here imports a driver.
"""

from __future__ import annotations

from typing import Protocol

from cargohold.domain.errors import StorageError


class PostgresAddress(Protocol):
    """Where a PostgreSQL database is and who logs in (``config.PostgresSettings`` is one)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def dbname(self) -> str: ...


def identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad SQL identifier: {name!r}")
    return name


def storage_error(e: Exception) -> StorageError:
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return StorageError(f"database error: {first_line}")
