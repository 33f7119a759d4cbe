"""A cursor for one projection transaction that sends view writes in bulk.

PERF: a replay applies a million events; one SQL round trip per row write (and one
``SELECT`` per event for its repository's name) was most of its time. Here writes are
queued and go out as one ``executemany`` per run of the same statement, and the names
of the repositories met in the transaction are remembered.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cargohold.adapters.sql import Cursor, Params


class BatchedWrites(Cursor):
    """Wraps the cursor of one open transaction.

    ``defer(table, sql, params)`` queues a write that touches only ``table``. Queued
    writes to one table keep their order, and consecutive ones with the same statement
    go out in one ``executemany``. ``execute``/``executemany`` (a read, or a write whose
    ``rowcount`` matters) first send everything queued, so every statement run through
    them sees exactly the rows it would have seen unbatched. Writes to *different*
    tables may reach the database in another order than they were queued: that is
    equivalent because a deferred write reads and changes its own table only (no
    triggers, no foreign keys, no ``INSERT ... SELECT``).

    ``flush`` must be called before the transaction commits (the runner does).
    ``repository_names`` (repository id -> name) and ``names`` ((table, id) -> name, for
    accounts and organisations) remember names for this transaction only, so a rollback
    can never leave a stale entry behind.
    """

    def __init__(self, cursor: Cursor) -> None:
        self._c = cursor
        self._queues: dict[str, list[tuple[str, list[Params]]]] = {}
        self.repository_names: dict[UUID, str] = {}
        self.names: dict[tuple[str, UUID], str] = {}

    def defer(self, table: str, sql: str, params: Params) -> None:
        queue = self._queues.get(table)
        if queue is None:
            self._queues[table] = [(sql, [params])]
        elif queue[-1][0] == sql:
            queue[-1][1].append(params)
        else:
            queue.append((sql, [params]))

    def flush(self) -> None:
        if not self._queues:
            return
        queues, self._queues = self._queues, {}
        for queue in queues.values():
            for sql, rows in queue:
                if len(rows) == 1:
                    self._c.execute(sql, rows[0])
                else:
                    self._c.executemany(sql, rows)

    # -- Cursor ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        self.flush()
        self._c.execute(sql, params)
        return self

    def executemany(self, sql: str, rows: Any) -> None:
        self.flush()
        self._c.executemany(sql, rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._c.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._c.fetchall()

    @property
    def rowcount(self) -> int:
        return self._c.rowcount


def write(c: Cursor, table: str, sql: str, params: Params) -> None:
    """Queue a write to ``table`` on a ``BatchedWrites`` cursor, else run it now."""
    if isinstance(c, BatchedWrites):
        c.defer(table, sql, params)
    else:
        c.execute(sql, params)
