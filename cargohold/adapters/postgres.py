"""The views' database on PostgreSQL: psycopg 3 with a connection pool.

Implements ``Database`` (``domain/ports.py``). Statements keep the port's ``?``
placeholders; they are rewritten to ``%s`` here. psycopg's errors become ``StorageError``
at one choke point (``_translate``). The only module of the package that imports psycopg.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from cargohold.adapters.sql import PostgresAddress
from cargohold.adapters.sql import identifier as _identifier
from cargohold.adapters.sql import storage_error as _storage_error
from cargohold.domain.ports import Cursor, Database, Params


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
        self, pg: PostgresAddress, *, pool_size: int = 8, schema: str | None = None
    ) -> None:
        self.address = pg
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

    def in_schema(self, schema: str, *, pool_size: int = 4) -> PostgresDatabase:
        """Another handle on the same database that sees only ``schema``."""
        return PostgresDatabase(self.address, pool_size=pool_size, schema=schema)

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


@contextmanager
def _translate() -> Iterator[None]:
    """The one choke point where psycopg's errors become ``StorageError``."""
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
        raise _storage_error(e) from e


def stream_rows(recorder: Any, ids: Sequence[Any], through: int) -> list[Any]:
    """The stored events of the streams ``ids`` (UUIDs) up to notification ``through``
    in eventsourcing's PostgreSQL ``recorder`` (9.5's table), each stream in version
    order, as the library's ``Notification`` objects."""
    from eventsourcing.persistence import Notification
    from psycopg.sql import SQL, Identifier

    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {schema}.{table} WHERE originator_id = ANY(%s) AND notification_id <= %s "
        "ORDER BY originator_id, originator_version"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
    )
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, [list(ids), through])
        return [
            Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in curs.fetchall()
        ]


def stream_versions(recorder: Any, ids: Sequence[Any]) -> dict[Any, int]:
    """The last version of each of the streams ``ids`` (UUIDs) that eventsourcing's
    PostgreSQL ``recorder`` holds."""
    from psycopg.sql import SQL, Identifier

    statement = SQL(
        "SELECT originator_id, MAX(originator_version) AS version FROM {schema}.{table} "
        "WHERE originator_id = ANY(%s) GROUP BY originator_id"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
    )
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, [list(ids)])
        return {row["originator_id"]: int(row["version"]) for row in curs.fetchall()}
