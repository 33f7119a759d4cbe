"""A cursor for one projection transaction that sends view writes in bulk.

PERF: a replay applies a million events; one SQL round trip per row write (and one
``SELECT`` per event for its repository's name) was most of its time. Here writes are
queued and go out as one ``executemany`` per run of the same statement, and the names
of the repositories met in the transaction are remembered.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cargohold.domain.ports import Cursor, Params


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
    ``repository_names`` (stream id -> name, of live repositories), ``stream_names`` (any
    repository stream's id -> its name) and ``names`` ((table, id) -> name, for accounts
    and organisations) remember names for this transaction only, so a rollback can never
    leave a stale entry behind; so do ``orders`` and ``refolds``, the geo fold's
    (``merge.py``); so does ``manifest_sizes`` (repository name ->
    digest -> the ``manifest_sizes`` row's ``(layers_size, is_manifest_list)``, or
    ``None`` for a row known to be absent), which the time machine keeps exact because it
    is that table's only writer.

    ``pending`` holds rows queued and not yet sent (as mutable lists), under a key their
    writer chooses: a writer may change such a row in place instead of queuing an
    ``UPDATE`` of it (PERF: an ``UPDATE`` between two ``INSERT`` statements of one table
    splits their ``executemany``). Every flush empties it: a sent row is out of reach.
    """

    def __init__(self, cursor: Cursor) -> None:
        self._c = cursor
        self._first: dict[str, list[tuple[str, list[Params]]]] = {}
        self._queues: dict[str, list[tuple[str, list[Params]]]] = {}
        self.repository_names: dict[UUID, str] = {}
        self.stream_names: dict[UUID, str] = {}
        self.orders: dict[str, tuple[Any, ...] | None] = {}
        self.orders_moved: set[str] = set()
        self.refolds: set[str] = set()
        self.names: dict[tuple[str, UUID], str] = {}
        self.manifest_sizes: dict[str, dict[str, tuple[int | None, int] | None]] = {}
        self.pending: dict[Any, list[Any]] = {}

    def defer(self, table: str, sql: str, params: Params) -> None:
        _enqueue(self._queues, table, sql, params)

    def defer_first(self, table: str, sql: str, params: Params) -> None:
        """Queue a write to ``table`` that goes out *before* the writes queued for it
        with ``defer`` since the last flush (and after those queued with ``defer_first``
        before it). Only for a write that the caller knows commutes with those."""
        _enqueue(self._first, table, sql, params)

    def flush(self) -> None:
        self.pending.clear()
        if not self._queues and not self._first:
            return
        first, self._first = self._first, {}
        queues, self._queues = self._queues, {}
        for queue in (*first.values(), *queues.values()):
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


def _enqueue(
    queues: dict[str, list[tuple[str, list[Params]]]], table: str, sql: str, params: Params
) -> None:
    queue = queues.get(table)
    if queue is None:
        queues[table] = [(sql, [params])]
    elif queue[-1][0] == sql:
        queue[-1][1].append(params)
    else:
        queue.append((sql, [params]))


def write(c: Cursor, table: str, sql: str, params: Params) -> None:
    """Queue a write to ``table`` on a ``BatchedWrites`` cursor, else run it now."""
    if isinstance(c, BatchedWrites):
        c.defer(table, sql, params)
    else:
        c.execute(sql, params)


def update_stream_row(c: Cursor, ns: str, table: str, e: Any, pos: int, **fields: Any) -> None:
    """Set ``fields`` (and ``position``) on the row of ``table`` whose ``id`` is ``e``'s
    stream: the views of aggregates with one row each (mirrors, proxy caches)."""
    names = sorted(fields)
    assignments = ", ".join(f"{name} = ?" for name in names)
    write(
        c,
        table,
        f"UPDATE {ns}{table} SET {assignments}, position = ? WHERE id = ?",
        (*(fields[n] for n in names), pos, str(e.originator_id)),
    )
