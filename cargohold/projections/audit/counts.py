"""Counts of audit entries per scope, UTC day and kind: what the aggregates read.

Counting a month of raw rows takes seconds at a million entries; these tables answer the
same question from a few thousand rows. Two tables of one shape::

    audit_counts    the entries of ``audit_log``: a view (in ``VIEW_TABLES``), written by
                    the projection in the same transaction as the entry, so ``replay
                    rebuild`` rebuilds it and ``verify`` compares it like any other view
    access_counts   the entries of ``access_log`` (pulls, logins): written by the access
                    log's flush in the same transaction as the batch; not a view (the
                    log does not describe a pull), recounted from ``access_log`` when it
                    is empty while ``access_log`` is not (a new table on an old data
                    dir) and by ``replay rebuild``

        scope   TEXT    '*' (every entry) | 'n:<namespace>' | 'r:<ns/name>'
        day     BIGINT  midnight UTC of the entries' day, epoch milliseconds
        kind    TEXT
        n       BIGINT  how many entries
        PRIMARY KEY (scope, day, kind)

An entry counts once in each scope it belongs to: ``*``, its namespace's (if it has
one) and its repository's (if it has one). So the superuser's, an organisation's and a
repository's aggregate each read only their own scope's rows: 30 days of one scope are at
most 30 x (number of kinds) rows, whatever the number of entries.

Invariant: for every scope, day and kind, ``n`` is the number of rows of the source
table in that scope, day and kind (``recount`` computes exactly that; the property test
``tests/unit/test_audit_counts.py`` checks the aggregates against raw ``GROUP BY``).

Increments are upserts (``INSERT ... ON CONFLICT ... DO UPDATE``, on SQLite and
PostgreSQL alike), applied in key order so that two flushes on PostgreSQL that touch the
same rows wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from cargohold.domain.ports import Cursor

DAY_MS = 86_400_000
SCOPE_ALL = "*"
AUDIT_COUNTS = "audit_counts"
ACCESS_COUNTS = "access_counts"

CountKey = tuple[str, int, str]  # (scope, day, kind)


def namespace_scope(namespace: str) -> str:
    return f"n:{namespace}"


def repository_scope(repository: str) -> str:
    return f"r:{repository}"


def day_of(time_ms: int) -> int:
    """Midnight UTC of the day of ``time_ms`` (epoch milliseconds)."""
    return time_ms // DAY_MS * DAY_MS


def keys_of(
    kind: str, time_ms: int, namespace: str | None, repository: str | None
) -> list[CountKey]:
    """The count rows one entry adds 1 to."""
    day = day_of(time_ms)
    keys = [(SCOPE_ALL, day, kind)]
    if namespace is not None:
        keys.append((namespace_scope(namespace), day, kind))
    if repository is not None:
        keys.append((repository_scope(repository), day, kind))
    return keys


def tally(entries: Iterable[tuple[str, int, str | None, str | None]]) -> Counter[CountKey]:
    """The increments for ``(kind, time_ms, namespace, repository)`` entries."""
    counts: Counter[CountKey] = Counter()
    for kind, time_ms, namespace, repository in entries:
        counts.update(keys_of(kind, time_ms, namespace, repository))
    return counts


def create_counts_table(c: Cursor, table: str) -> None:
    """Create a counts table (``ns``-prefixed name allowed) unless it exists."""
    c.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (scope TEXT, day BIGINT, kind TEXT, n BIGINT, "
        "PRIMARY KEY (scope, day, kind))"
    )


def _upsert(table: str, rows: int) -> str:
    values = ", ".join("(?, ?, ?, ?)" for _ in range(rows))
    # NOTE: the alias names the existing row; PostgreSQL wants no schema on it.
    return (
        f"INSERT INTO {table} AS t (scope, day, kind, n) VALUES {values} "
        "ON CONFLICT (scope, day, kind) DO UPDATE SET n = t.n + excluded.n"
    )


def add(c: Cursor, table: str, counts: Mapping[CountKey, int]) -> None:
    """Add ``counts`` to ``table`` (one statement for a handful of rows, else a batch)."""
    if not counts:
        return
    items = sorted(counts.items())  # NOTE: key order: no deadlock between two writers
    if len(items) <= 3:
        params = [v for (scope, day, kind), n in items for v in (scope, day, kind, n)]
        c.execute(_upsert(table, len(items)), params)
        return
    c.executemany(_upsert(table, 1), [(scope, day, kind, n) for (scope, day, kind), n in items])


def recount(c: Cursor, source: str, target: str) -> None:
    """Replace ``target``'s rows with the counts of ``source``'s rows (the invariant)."""
    day = f"time_ms / {DAY_MS} * {DAY_MS}"
    c.execute(f"DELETE FROM {target}")
    c.execute(
        f"INSERT INTO {target} (scope, day, kind, n) "
        f"SELECT '{SCOPE_ALL}', {day}, kind, COUNT(*) FROM {source} GROUP BY {day}, kind "
        "UNION ALL "
        f"SELECT 'n:' || namespace, {day}, kind, COUNT(*) FROM {source} "
        f"WHERE namespace IS NOT NULL GROUP BY namespace, {day}, kind "
        "UNION ALL "
        f"SELECT 'r:' || repository, {day}, kind, COUNT(*) FROM {source} "
        f"WHERE repository IS NOT NULL GROUP BY repository, {day}, kind"
    )
