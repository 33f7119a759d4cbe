"""Rebuild and verify the read models from the log.

Both build fresh views from position 0 in a *scratch* namespace (an attached SQLite file,
or a PostgreSQL schema), using the same projector as the live runner:

- ``rebuild`` then swaps them in: one transaction that holds the live tracking row (so
  the live projection cannot advance meanwhile), applies to the scratch views whatever
  the live ones saw since, replaces every live table's rows with the scratch rows, and
  sets the live position. Readers see the old views or the new ones, never a mix. The
  same transaction recounts ``access_counts`` from ``access_log`` (derived, though
  not from the log).
- ``verify`` builds scratch views up to the live position, then, holding the live
  tracking row, catches them up to the live position and compares table by table,
  returning every row found on one side only.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cargohold.adapters.data_dir import DataDir, remove_sqlite, scratch_schema
from cargohold.adapters.postgres import PostgresDatabase
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.domain.ports import Cursor, Database
from cargohold.progress import follow_positions, progress_bar
from cargohold.projections.access_log import recount_access
from cargohold.projections.runner import PROJECTION_NAME, EventSource, ProjectionRunner
from cargohold.projections.schema import VIEW_TABLES, Table, create_indexes, drop_indexes

DIFF_LIMIT = 50  # rows shown per table and side


@dataclass(frozen=True)
class Difference:
    table: str
    side: str  # "live only" | "replay only"
    row: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.table}: {self.side}: {self.row}"


@dataclass(frozen=True)
class ReplayResult:
    position: int
    events: int
    differences: tuple[Difference, ...] = ()


@contextmanager
def _scratch(views_db: Database, layout: DataDir) -> Iterator[tuple[Database, str]]:
    """A database handle that sees the live views and an empty scratch namespace."""
    token = uuid.uuid4().hex[:12]
    db: Database
    if isinstance(views_db, PostgresDatabase):
        schema = scratch_schema(token)
        db = views_db
        with db.transaction() as c:
            c.execute(f"CREATE SCHEMA {schema}")
        try:
            yield db, f"{schema}."
        finally:
            with db.transaction() as c:
                c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    else:
        path = layout.scratch_views(token)
        # NOTE: disposable (no journal, no fsync): the file is deleted below whatever
        # happens, and the swap into the live views is one durable transaction there.
        db = SQLiteDatabase(
            layout.views,
            attach={"scratch": path},
            disposable=frozenset({"scratch"}),
            cache_mib=256,
        )
        try:
            yield db, "scratch."
        finally:
            db.close()
            remove_sqlite(path)


def _build(
    log: EventSource,
    db: Database,
    ns: str,
    stop: int | None,
    quiet: bool,
    what: str,
    *,
    indexes: bool = True,
) -> ProjectionRunner:
    """Views of the log up to ``stop`` (all of it: None) in the empty namespace ``ns``;
    its secondary indexes too, unless ``indexes`` is false (for views only copied out)."""
    source = log
    # PERF: big batches (one transaction, one executemany per statement run, each),
    # and the secondary indexes built once at the end rather than kept up row by row.
    runner = ProjectionRunner(db, source, batch_size=5000)
    runner.create_tables(ns, indexes=False, clustered=not indexes)
    total = stop if stop is not None else source.head()
    bar = progress_bar(total, what, quiet=quiet)
    advance = follow_positions(bar)
    try:
        with few_collections():
            runner.catch_up(ns, stop=stop, progress=advance)
    finally:
        bar.close()
    if indexes:
        with db.transaction() as c:
            create_indexes(c, db.dialect, ns)
    return runner


@contextmanager
def few_collections() -> Iterator[None]:
    """Run the block with Python's cyclic garbage collector mostly out of its way.

    PERF: a build allocates millions of short-lived objects (events, rows) that
    reference counting frees; the collector still walked the growing heap ~1,000 times
    per 100,000 events (~10% of a rebuild, measured with ``gc.callbacks``). The objects
    alive at the start are frozen (not scanned again) unless something froze objects
    already, and young collections run 100 times less often: cycles made meanwhile are
    still collected, later. Both are restored on leaving."""
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(thresholds[0] * 100, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()


def _lock_live(c: Cursor, dialect: str) -> int:
    """Inside a write transaction: hold the live tracking row and return its position."""
    lock = " FOR UPDATE" if dialect == "postgres" else ""
    row = c.execute(
        f"SELECT position FROM tracking WHERE name = ?{lock}", (PROJECTION_NAME,)
    ).fetchone()
    if row is None:
        raise RuntimeError("the live views are not initialised")
    return int(row[0])


def _catch_up_inside(c: Cursor, runner: ProjectionRunner, ns: str, target: int) -> int:
    """Inside an open transaction, bring scratch views from their position to ``target``."""
    position = runner.read_position(c, ns)
    while position < target:
        batch = runner.source.read(position, runner.batch_size, target)
        if not batch:
            break
        position = runner.apply_batch(c, ns, position, batch)
    return position


def rebuild(
    views_db: Database,
    log: EventSource,
    runner: ProjectionRunner,
    layout: DataDir,
    *,
    quiet: bool = False,
) -> ReplayResult:
    """Rebuild every view of ``views_db`` from ``log`` and swap them in (module docstring);
    ``runner``, the live projection, re-reads its position afterwards. Scratch views go
    where ``layout`` says."""
    with _scratch(views_db, layout) as (db, ns):
        # PERF: no secondary indexes on views that are only copied (in key order) into
        # the live tables, which get theirs there.
        scratch = _build(log, db, ns, None, quiet, "rebuild", indexes=False)
        with db.transaction() as c:
            live = _lock_live(c, db.dialect)
            position = max(live, _catch_up_inside(c, scratch, ns, live))
            # PERF: on SQLite (where this transaction holds the write lock anyway, and
            # readers keep their snapshot) the live secondary indexes are dropped and
            # built again once, and rows go in in key order. On PostgreSQL dropping an
            # index would lock readers out until the commit, so it is not done there.
            rebuild_indexes = db.dialect == "sqlite"
            if rebuild_indexes:
                drop_indexes(c, db.dialect)
            for table in VIEW_TABLES:
                cols = ", ".join(table.column_names)
                order = ", ".join(table.key)
                c.execute(f"DELETE FROM {table.name}")
                c.execute(
                    f"INSERT INTO {table.name} ({cols}) "
                    f"SELECT {cols} FROM {ns}{table.name} ORDER BY {order}"
                )
            if rebuild_indexes:
                create_indexes(c, db.dialect)
            # NOTE: not a view, but derived data all the same: the pulls' and logins'
            # counts are recomputed from access_log (which rebuild never changes).
            recount_access(c, db.dialect)
            c.execute(
                "UPDATE tracking SET position = ? WHERE name = ?", (position, PROJECTION_NAME)
            )
        # The live runner's memory of its position may be ahead or behind; re-read it.
        runner.catch_up()
        return ReplayResult(position=position, events=position)


def verify(
    views_db: Database,
    log: EventSource,
    runner: ProjectionRunner,
    layout: DataDir,
    *,
    quiet: bool = False,
) -> ReplayResult:
    """Compare the views of ``views_db`` with a fresh replay of ``log`` up to the live
    position of ``runner`` (module docstring); every differing row is returned."""
    live_start = runner.position()
    with _scratch(views_db, layout) as (db, ns):
        scratch = _build(log, db, ns, live_start, quiet, "verify")
        differences: list[Difference] = []
        with db.transaction() as c:
            live = _lock_live(c, db.dialect)
            _catch_up_inside(c, scratch, ns, live)
            for table in VIEW_TABLES:
                differences.extend(_compare(c, table, ns))
        return ReplayResult(position=live, events=live, differences=tuple(differences))


def _compare(c: Cursor, table: Table, ns: str) -> list[Difference]:
    cols = ", ".join(table.column_names)
    order = ", ".join(table.key)
    found: list[Difference] = []
    for side, left, right in (("live only", "", ns), ("replay only", ns, "")):
        rows = c.execute(
            f"SELECT {cols} FROM {left}{table.name} EXCEPT "
            f"SELECT {cols} FROM {right}{table.name} ORDER BY {order} LIMIT {DIFF_LIMIT}"
        ).fetchall()
        found.extend(Difference(table.name, side, tuple(r)) for r in rows)
    return found
