"""The views' database on SQLite: a file under the data dir, in WAL mode.

Implements ``Database`` (``domain/ports.py``); ``sqlite3`` errors become ``StorageError``
at one choke point (``_translate``), so no driver type crosses the port.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cargohold.adapters.sql import identifier as _identifier
from cargohold.adapters.sql import storage_error as _storage_error
from cargohold.domain.ports import Cursor, Database, Params


class _SQLiteCursor(Cursor):
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._c = cursor

    # PERF: try/except rather than ``with _translate()``: a generator context manager
    # per statement was ~10% of a replay, which runs a few hundred thousand of them.
    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            self._c.execute(sql, params)
        except sqlite3.Error as e:
            raise _storage_error(e) from e
        return self

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._c.executemany(sql, rows)
        except sqlite3.Error as e:
            raise _storage_error(e) from e

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._c.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        # PERF: without a row_factory sqlite3 rows already are tuples; copying each one
        # was 28% of a 2,000-tag listing.
        return self._c.fetchall()

    @property
    def rowcount(self) -> int:
        return self._c.rowcount


class SQLiteDatabase(Database):
    """SQLite in WAL mode; one connection per thread.

    ``attach`` maps schema names to further database files, attached to every connection
    (replay builds its scratch views in an attached file and copies them over in one
    transaction). The attached schemas named in ``disposable`` trade durability for
    speed: no rollback journal, no fsync. A crash or a rollback may leave such a file
    corrupt, so only a file that is thrown away whenever its writer fails may be one
    (replay's scratch file); the main database keeps WAL and its rollback, also in a
    transaction that writes both. ``cache_mib`` sets the page cache of every schema of
    a connection and keeps temporary tables and sorts in memory (for bulk work: a
    replay's copy into the live tables and their index builds).
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        attach: dict[str, Path] | None = None,
        disposable: frozenset[str] = frozenset(),
        cache_mib: int | None = None,
    ) -> None:
        self.path = path
        self._attach = dict(attach or {})
        if not disposable <= set(self._attach):
            raise ValueError("only an attached schema can be disposable")
        self._disposable = disposable
        self._cache_mib = cache_mib
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with _translate():
                conn = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False, timeout=60
                )
                conn.execute("PRAGMA journal_mode=WAL")
                # PERF: WAL + NORMAL is durable across process crashes (the WAL is
                # fsynced at checkpoints); the log itself is the source of truth anyway.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=60000")
                for name, path in self._attach.items():
                    schema = _identifier(name)
                    conn.execute(f"ATTACH DATABASE ? AS {schema}", (str(path),))
                    if name in self._disposable:
                        # PERF: see the class docstring; ~half of a replay's wall time
                        # was the scratch file's journal and fsyncs.
                        conn.execute(f"PRAGMA {schema}.journal_mode=OFF")
                        conn.execute(f"PRAGMA {schema}.synchronous=OFF")
                    else:
                        conn.execute(f"PRAGMA {schema}.journal_mode=WAL")
                if self._cache_mib is not None:
                    for schema in ("main", *map(_identifier, self._attach)):
                        conn.execute(f"PRAGMA {schema}.cache_size={-1024 * self._cache_mib}")
                    conn.execute("PRAGMA temp_store=MEMORY")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        conn = self._connection()
        with _translate():
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _SQLiteCursor(conn.cursor())
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        with _translate():
            conn.execute("COMMIT")

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        # PERF: in autocommit mode one statement is its own read transaction; skipping
        # BEGIN/COMMIT saves two statements and their GIL round trips per query.
        conn = self._connection()
        with _translate():
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


@contextmanager
def _translate() -> Iterator[None]:
    """The one choke point where sqlite3's errors become ``StorageError``."""
    try:
        yield
    except sqlite3.Error as e:
        raise _storage_error(e) from e
