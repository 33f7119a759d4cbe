"""The aggregates read from the counts tables answer exactly what counting raw rows does.

Random entries go in through the real write paths (``insert_entry``, the projection's;
``BufferedAccessLog.flush``, the pulls'), around a few UTC midnights; random filters
(whole days or any millisecond, scope, performer, kinds) are then answered both ways.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.domain.ports import AccessRecord
from cargohold.domain.values import Actor, ActorKind
from cargohold.projections.access_log import BufferedAccessLog, create_access_log_table
from cargohold.projections.audit import counts as audit_counts
from cargohold.projections.audit.counts import DAY_MS
from cargohold.projections.audit.entry import insert_entry, iso
from cargohold.projections.audit.queries import AuditQueries, LogFilter
from cargohold.projections.schema import create_tables

BASE = 20_000 * DAY_MS  # a midnight UTC (2024-10-04)
SPAN = 4 * DAY_MS
NAMESPACES = ["acme", "bob"]
REPOSITORIES = [None, "acme/web", "acme/db", "bob/app"]
PERFORMERS = ["alice", "acme+ci", "bob"]
KINDS = ["push_repo", "create_tag", "delete_repo", "pull_repo", "login_success"]

# A time: anywhere in four days, or within a second of a midnight (the edge cases).
times = st.one_of(
    st.integers(BASE - DAY_MS, BASE + SPAN),
    st.builds(
        lambda day, off: BASE + day * DAY_MS + off,
        st.integers(-1, 4),
        st.integers(-1000, 1000),
    ),
)


@st.composite
def entries(draw: st.DrawFn) -> tuple[str, str, int, str | None, str | None, str]:
    """``(source, kind, time_ms, namespace, repository, performer)``."""
    source = draw(st.sampled_from(["log", "access"]))
    repository = draw(st.sampled_from(REPOSITORIES))
    if repository is not None:
        namespace: str | None = repository.partition("/")[0]
    else:
        # NOTE: only an access entry (a login by no known user) may have no namespace.
        choices: list[str | None] = [*NAMESPACES, None] if source == "access" else NAMESPACES
        namespace = draw(st.sampled_from(choices))
    kind = draw(st.sampled_from(KINDS))
    return source, kind, draw(times), namespace, repository, draw(st.sampled_from(PERFORMERS))


@st.composite
def filters(draw: st.DrawFn) -> LogFilter:
    if draw(st.booleans()):  # whole days, as the endpoints' MM/DD/YYYY
        first = draw(st.integers(-2, 5))
        start, end = BASE + first * DAY_MS, BASE + (first + draw(st.integers(0, 6))) * DAY_MS
    else:
        start = draw(times)
        end = start + draw(st.one_of(st.integers(0, 2 * DAY_MS), st.integers(0, 7 * DAY_MS)))
    scope = draw(st.sampled_from(["all", "namespace", "repository", "both"]))
    repository = draw(st.sampled_from(REPOSITORIES[1:]))
    namespace = draw(st.sampled_from(NAMESPACES))
    kinds = draw(st.none() | st.frozensets(st.sampled_from(KINDS), min_size=1))
    return LogFilter(
        start_ms=start,
        end_ms=end,
        namespace=namespace if scope in ("namespace", "both") else None,
        repository=repository if scope in ("repository", "both") else None,
        performer=draw(st.none() | st.sampled_from(PERFORMERS)),
        kinds=kinds,
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> SQLiteDatabase:
    database = SQLiteDatabase(Path(tmp_path_factory.mktemp("counts")) / "views.sqlite")
    with database.transaction() as c:
        create_tables(c, "sqlite")
        create_access_log_table(c, "sqlite")
    return database


def _load(db: SQLiteDatabase, batch: list[Any], batch_size: int) -> None:
    """Audit entries as the projection writes them (in batches of ``batch_size``, their
    counts added at each batch's end; size 1: each entry's at once), access entries
    through the access log's flush (batches of ``batch_size``)."""
    with db.transaction() as c:
        for table in ("audit_log", "audit_counts", "access_log", "access_counts"):
            c.execute(f"DELETE FROM {table}")
    access = BufferedAccessLog(db, batch_size=batch_size)
    audit = [(i, e) for i, e in enumerate(batch) if e[0] == "log"]
    for start in range(0, len(audit), batch_size):
        counts: Counter[audit_counts.CountKey] | None = None if batch_size == 1 else Counter()
        with db.transaction() as c:
            for position, (_, kind, t, namespace, repository, performer) in audit[
                start : start + batch_size
            ]:
                at = datetime.fromtimestamp(t / 1000, UTC)
                row = (position + 1, 0, kind, iso(at), t, namespace, repository, "user")
                insert_entry(c, "", (*row, performer, None, None, "{}", None), counts)
            if counts is not None:
                audit_counts.add(c, audit_counts.AUDIT_COUNTS, counts)
    for source, kind, t, namespace, repository, performer in batch:
        if source != "access":
            continue
        at = datetime.fromtimestamp(t / 1000, UTC)
        access.record(
            AccessRecord(kind, at, Actor(ActorKind.USER, performer), namespace, repository)
        )
    access.flush()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=st.lists(entries(), max_size=60),
    batch_size=st.integers(1, 20),
    queries=st.lists(filters(), min_size=1, max_size=8),
)
def test_the_aggregates_equal_counting_raw_rows(
    db: SQLiteDatabase, batch: list[Any], batch_size: int, queries: list[LogFilter]
) -> None:
    _load(db, batch, batch_size)
    q = AuditQueries(db)
    for f in queries:
        assert q.aggregate(f) == q.aggregate_raw(f), f


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(entries(), max_size=60), batch_size=st.integers(1, 20))
def test_the_incremental_counts_equal_a_recount(
    db: SQLiteDatabase, batch: list[Any], batch_size: int
) -> None:
    _load(db, batch, batch_size)
    with db.transaction() as c:
        for source, target in (("audit_log", "audit_counts"), ("access_log", "access_counts")):
            kept = sorted(c.execute(f"SELECT * FROM {target}").fetchall())
            audit_counts.recount(c, source, target)
            assert sorted(c.execute(f"SELECT * FROM {target}").fetchall()) == kept, target


def test_an_empty_access_counts_table_is_recounted_at_start(db: SQLiteDatabase) -> None:
    day = BASE + 3 * DAY_MS
    _load(db, [("access", "pull_repo", day + 5, "acme", "acme/web", "bob")] * 3, 2)
    with db.transaction() as c:
        c.execute("DROP TABLE access_counts")
        create_access_log_table(c, "sqlite")  # what a start does on an older data dir
        got = sorted(c.execute("SELECT scope, day, kind, n FROM access_counts").fetchall())
    assert got == [
        ("*", day, "pull_repo", 3),
        ("n:acme", day, "pull_repo", 3),
        ("r:acme/web", day, "pull_repo", 3),
    ]
