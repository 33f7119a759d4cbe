"""The SQL database that holds the read models (views), behind one small port.

Two adapters: SQLite (a file under the data dir, WAL mode) and PostgreSQL (psycopg 3 with
a connection pool). Statements are written once with ``?`` placeholders; the PostgreSQL
adapter rewrites them to ``%s``. Both translate their driver's errors into
``StorageError`` at one choke point (``_translate``), so no driver type crosses the port.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

from cargohold.config import PostgresSettings
from cargohold.domain.errors import StorageError

Params = Sequence[Any]


class Cursor(ABC):
    """The part of a DB-API cursor the views use."""

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    @abstractmethod
    def fetchone(self) -> tuple[Any, ...] | None: ...

    @abstractmethod
    def fetchall(self) -> list[tuple[Any, ...]]: ...

    @property
    @abstractmethod
    def rowcount(self) -> int: ...


class Database(ABC):
    """A transactional SQL database.

    ``transaction(write=True)`` takes the write lock at its start on SQLite (``BEGIN
    IMMEDIATE``), so two writers never deadlock upgrading a read lock; on PostgreSQL it is
    an ordinary READ COMMITTED transaction. Leaving the block normally commits; an
    exception rolls back and propagates (driver errors as ``StorageError``).
    """

    dialect: str

    @abstractmethod
    def transaction(self, *, write: bool = True) -> Any:
        """A context manager yielding a ``Cursor``."""

    @abstractmethod
    def close(self) -> None: ...

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement, run on its own (one statement sees one
        consistent snapshot on both databases, so it needs no explicit transaction)."""
        with self.transaction(write=False) as c:
            rows: list[tuple[Any, ...]] = c.execute(sql, params).fetchall()
        return rows

    def check(self) -> None:
        """Raise ``StorageError`` (one line) unless the database answers."""
        with self.transaction(write=False) as c:
            c.execute("SELECT 1")


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


class _PostgresCursor(Cursor):
    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self._c = cursor

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        with _translate():
            self._c.execute(_pg_sql(sql), params)
        return self

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with _translate():
            self._c.executemany(_pg_sql(sql), rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._c.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._c.fetchall()

    @property
    def rowcount(self) -> int:
        return self._c.rowcount


class PostgresDatabase(Database):
    """PostgreSQL through a psycopg 3 connection pool.

    With ``schema``, every connection resolves unqualified names in that schema alone
    (its ``search_path``): the same statements then read and write a second set of views
    (the registry as of a moment) without seeing the live ones.
    """

    dialect = "postgres"

    def __init__(
        self, pg: PostgresSettings, *, pool_size: int = 8, schema: str | None = None
    ) -> None:
        self.settings = pg
        self.schema = schema
        options = {} if schema is None else {"options": f"-c search_path={_identifier(schema)}"}
        conninfo = psycopg.conninfo.make_conninfo(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            dbname=pg.dbname,
            connect_timeout=10,
            **options,
        )
        with _translate():
            # Fail fast, with the server's own reason, before the pool starts retrying.
            psycopg.connect(conninfo).close()
            self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = (
                psycopg_pool.ConnectionPool(
                    conninfo, min_size=1, max_size=pool_size, open=True, timeout=30
                )
            )

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        with (
            _translate(),
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            yield _PostgresCursor(cur)

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with _translate(), self._pool.connection() as conn:
            return conn.execute(_pg_sql(sql), params).fetchall()

    def close(self) -> None:
        self._pool.close()


def _pg_sql(sql: str) -> str:
    # NOTE: our statements never contain a literal "?" or "%", so this is exact.
    return sql.replace("?", "%s")


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad SQL identifier: {name!r}")
    return name


@contextmanager
def _translate() -> Iterator[None]:
    """The one choke point where driver errors become ``StorageError``."""
    try:
        yield
    except (sqlite3.Error, psycopg.Error, psycopg_pool.PoolTimeout) as e:
        raise _storage_error(e) from e


def _storage_error(e: Exception) -> StorageError:
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return StorageError(f"database error: {first_line}")
