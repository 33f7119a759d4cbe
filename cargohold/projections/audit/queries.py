"""Queries over the audit log: ``audit_log`` (from the event log) and ``access_log`` (pulls
and logins) merged, newest first.

Order and pages: entries are ordered by the key ``(time_ms, source, a, b)`` descending,
where ``source`` is 1 for ``audit_log`` (``a, b`` = position, sequence) and 0 for
``access_log`` (``a`` = id, ``b`` = 0): a total order over both tables. A page is keyset
pagination: each side runs ``... WHERE <filters> AND key < last ORDER BY key DESC LIMIT
n + 1`` over an index that ends in the order key, and the two lists merge. No OFFSET, so
the 1000th page costs what the first does.

Filters: a time range ``[start_ms, end_ms)``, and any of namespace, repository, performer
name, kinds. Several kinds run one query per kind and side (each an index range scan on
``(kind, time_ms, ...)`` or a filtered scan) and merge, rather than one ``IN`` that would
have to sort every match.

Aggregates (counts per kind per UTC day) read the counts tables for the whole days of
the range and group raw rows only for partial edge days and performer filters
(``aggregate``); ``aggregate_raw`` groups every raw row, the reference they equal.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cargohold.domain.ports import Cursor, Database
from cargohold.projections.audit import counts as audit_counts
from cargohold.projections.audit.counts import DAY_MS
from cargohold.projections.audit.entry import ENTRY_COLUMNS

AUDIT, ACCESS = 1, 0

Key = tuple[int, int, int, int]  # (time_ms, source, a, b)


@dataclass(frozen=True)
class LogFilter:
    start_ms: int
    end_ms: int  # exclusive
    namespace: str | None = None
    repository: str | None = None
    performer: str | None = None
    kinds: frozenset[str] | None = None  # None: every kind


@dataclass(frozen=True)
class LogEntry:
    key: Key
    kind: str
    time: str
    time_ms: int
    namespace: str | None
    repository: str | None
    performer_kind: str
    performer_name: str
    ip: str | None
    request_id: str | None
    metadata: dict[str, Any]
    #: The site whose log the event went into (an access entry's: this site); None for
    #: log entries of views made before the column (until ``replay rebuild``).
    site_id: str | None = None

    @property
    def source(self) -> str:
        return "log" if self.key[1] == AUDIT else "access"

    @property
    def position(self) -> int | None:
        """The notification id of the event (entries from the log only)."""
        return self.key[2] if self.key[1] == AUDIT else None


@dataclass(frozen=True)
class KindCount:
    kind: str
    day_ms: int  # midnight UTC, epoch milliseconds
    count: int


_SIDES: dict[int, tuple[str, str]] = {
    AUDIT: ("audit_log", "position, sequence"),
    ACCESS: ("access_log", "id, 0"),
}
# The origin column of each side (``access_log`` holds this site's entries only).
_SITE: dict[int, str] = {AUDIT: "site_id", ACCESS: "NULL"}


class AuditQueries:
    """``site_id``: this site, the origin of every ``access_log`` entry."""

    def __init__(self, db: Database, site_id: str | None = None) -> None:
        self.db = db
        self.site_id = site_id

    # -- pages -------------------------------------------------------------------------

    def page(self, f: LogFilter, after: Key | None, limit: int) -> tuple[list[LogEntry], bool]:
        """Up to ``limit`` entries after ``after`` (``None``: from the newest), and whether
        there are more."""
        with self.db.transaction(write=False) as c:
            found = self._newest(c, f, after, limit + 1)
        return found[:limit], len(found) > limit

    def iterate(self, f: LogFilter, chunk: int = 1000) -> Iterator[LogEntry]:
        """Every matching entry, newest first, read ``chunk`` at a time (a stream: the
        whole result is never in memory)."""
        after: Key | None = None
        while True:
            entries, more = self.page(f, after, chunk)
            yield from entries
            if not more or not entries:
                return
            after = entries[-1].key

    def _newest(self, c: Cursor, f: LogFilter, after: Key | None, n: int) -> list[LogEntry]:
        streams: list[list[LogEntry]] = []
        kinds: Sequence[str | None] = [None] if f.kinds is None else sorted(f.kinds)
        for source in (AUDIT, ACCESS):
            for kind in kinds:
                streams.append(self._side(c, source, f, kind, after, n))
        merged = heapq.merge(*streams, key=lambda e: e.key, reverse=True)
        return list(itertools.islice(merged, n))

    def _side(
        self,
        c: Cursor,
        source: int,
        f: LogFilter,
        kind: str | None,
        after: Key | None,
        n: int,
    ) -> list[LogEntry]:
        table, tie = _SIDES[source]
        where, params = _where(f, kind)
        if after is not None:
            t, s, a, b = after
            if s == source:
                where.append(f"(time_ms, {tie}) < (?, ?, ?)")
                params.extend([t, a, b])
            elif s > source:  # the other side sorts first at equal time_ms
                where.append("time_ms <= ?")
                params.append(t)
            else:
                where.append("time_ms < ?")
                params.append(t)
        order = ", ".join(f"{col} DESC" for col in ("time_ms", *tie.split(", ")) if col != "0")
        rows = c.execute(
            f"SELECT {tie}, {', '.join(ENTRY_COLUMNS)}, {_SITE[source]} FROM {table} "
            f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
            (*params, n),
        ).fetchall()
        here = self.site_id if source == ACCESS else None
        return [_entry(source, row, here) for row in rows]

    # -- aggregates --------------------------------------------------------------------

    def aggregate(self, f: LogFilter) -> list[KindCount]:
        """Counts per kind per UTC day over the filtered entries, by day then kind.

        The same answer as ``aggregate_raw``, read mostly from the counts tables
        (``counts.py``): the whole UTC days inside the range from the scope's
        rows, the partial days at its edges (a range from "now - 1 day", the endpoints'
        default) from raw rows. A performer filter counts raw rows (the performer's own,
        through the ``(performer_name, time_ms)`` index): the counts have no performer.
        """
        totals: Counter[tuple[int, str]] = Counter()
        scope = _scope(f)
        with self.db.transaction(write=False) as c:
            if scope is None:
                self._count_raw(c, f, f.start_ms, f.end_ms, totals)
                return _kind_counts(totals)
            first = -(-f.start_ms // DAY_MS) * DAY_MS  # the first whole day's midnight
            last = f.end_ms // DAY_MS * DAY_MS  # the midnight after the last whole day
            if first >= last:
                self._count_raw(c, f, f.start_ms, f.end_ms, totals)
                return _kind_counts(totals)
            self._count_days(c, f, scope, first, last, totals)
            if f.start_ms < first:
                self._count_raw(c, f, f.start_ms, first, totals)
            if last < f.end_ms:
                self._count_raw(c, f, last, f.end_ms, totals)
        return _kind_counts(totals)

    def aggregate_raw(self, f: LogFilter) -> list[KindCount]:
        """``aggregate`` by counting every matching row (the reference; slow at scale)."""
        totals: Counter[tuple[int, str]] = Counter()
        with self.db.transaction(write=False) as c:
            self._count_raw(c, f, f.start_ms, f.end_ms, totals)
        return _kind_counts(totals)

    @staticmethod
    def _count_days(
        c: Cursor,
        f: LogFilter,
        scope: str,
        first: int,
        last: int,
        totals: Counter[tuple[int, str]],
    ) -> None:
        for table in (audit_counts.AUDIT_COUNTS, audit_counts.ACCESS_COUNTS):
            where = "scope = ? AND day >= ? AND day < ?"
            params: list[Any] = [scope, first, last]
            if f.kinds is not None:
                where += f" AND kind IN ({', '.join('?' for _ in f.kinds)})"
                params.extend(sorted(f.kinds))
            for day, kind, n in c.execute(
                f"SELECT day, kind, n FROM {table} WHERE {where}", params
            ).fetchall():
                totals[int(day), str(kind)] += int(n)

    @staticmethod
    def _count_raw(
        c: Cursor, f: LogFilter, start_ms: int, end_ms: int, totals: Counter[tuple[int, str]]
    ) -> None:
        bounded = LogFilter(start_ms, end_ms, f.namespace, f.repository, f.performer, f.kinds)
        for table, _ in _SIDES.values():
            where, params = _where(bounded, None)
            if f.kinds is not None:
                where.append(f"kind IN ({', '.join('?' for _ in f.kinds)})")
                params.extend(sorted(f.kinds))
            rows = c.execute(
                f"SELECT time_ms / {DAY_MS} AS day, kind, COUNT(*) FROM {table} "
                f"WHERE {' AND '.join(where)} GROUP BY day, kind",
                params,
            ).fetchall()
            for day, kind, count in rows:
                totals[int(day) * DAY_MS, str(kind)] += int(count)


def _scope(f: LogFilter) -> str | None:
    """The counts scope that answers ``f``'s filters exactly; ``None``: count raw rows."""
    if f.performer is not None:
        return None
    if f.repository is not None:
        # NOTE: a repository's entries all have its namespace; another namespace too
        # would be a filter the counts cannot answer.
        ns = f.repository.partition("/")[0]
        if f.namespace is not None and f.namespace != ns:
            return None
        return audit_counts.repository_scope(f.repository)
    if f.namespace is not None:
        return audit_counts.namespace_scope(f.namespace)
    return audit_counts.SCOPE_ALL


def _kind_counts(totals: Counter[tuple[int, str]]) -> list[KindCount]:
    return [KindCount(kind, day, n) for (day, kind), n in sorted(totals.items()) if n]


def _where(f: LogFilter, kind: str | None) -> tuple[list[str], list[Any]]:
    where = ["time_ms >= ?", "time_ms < ?"]
    params: list[Any] = [f.start_ms, f.end_ms]
    for column, value in (
        ("namespace", f.namespace),
        ("repository", f.repository),
        ("performer_name", f.performer),
        ("kind", kind),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


def _entry(source: int, row: tuple[Any, ...], here: str | None) -> LogEntry:
    a, b, kind, time, time_ms, namespace, repository, pkind, pname, ip, rid, meta, site = row
    return LogEntry(
        key=(int(time_ms), source, int(a), int(b)),
        kind=str(kind),
        time=str(time),
        time_ms=int(time_ms),
        namespace=namespace,
        repository=repository,
        performer_kind=str(pkind),
        performer_name=str(pname),
        ip=ip,
        request_id=rid,
        metadata=json.loads(meta) if meta else {},
        site_id=here if site is None else str(site),
    )
