"""The registry as it stood at a moment: building its views, and opening it to serve.

What "as of T" means, and how a past registry answers questions, is in
``projections/as_of.py``. This module is the one builder: ``build`` (``replay as-of``)
brings the kept views of T up to date, ``open_registry`` (``serve --as-of``) opens them
with the queries that serve them, ``drop`` removes them. Where they are kept is
``adapters/data_dir.py``'s: a SQLite file under ``as-of/``, or a PostgreSQL schema.

A build catches up from where a kept one stopped, one transaction per batch with its
tracking position, like the live projection: a build killed halfway resumes, and a
build whose cut was met (a later event exists) is final. The pulls and logins up to T
are copied from the live ``access_log`` (not a view; see ``projections/access_log.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cargohold.adapters.data_dir import DataDir, as_of_schema, remove_sqlite
from cargohold.adapters.postgres import PostgresDatabase
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.domain.clock import stamp
from cargohold.domain.ports import Database
from cargohold.projections.access_log import copy_access_log
from cargohold.projections.as_of import AsOfIdentityQueries, AsOfRegistryQueries, TimeBoundSource
from cargohold.projections.audit.queries import AuditQueries
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.queries import RegistryQueries
from cargohold.projections.runner import EventSource, ProjectionRunner
from cargohold.projections.schema import create_indexes

__all__ = [
    "AsOfError",
    "AsOfRegistry",
    "AsOfViews",
    "build",
    "drop",
    "location",
    "open_registry",
    "open_views",
    "refusal",
    "stamp",
]


class AsOfError(Exception):
    """The moment cannot be built (it is in the future); the message is one line."""


@dataclass(frozen=True)
class AsOfViews:
    at_ms: int
    position: int  # the views hold the log up to this position
    last_event_ms: int | None  # the stamp of the last event they hold
    final: bool  # a later event exists: no event can change these views any more
    access_entries: int  # pulls and logins up to the moment
    location: str


@dataclass(frozen=True)
class AsOfRegistry:
    """The registry as of a moment, opened to serve: its views (in ``db``) and the
    queries over them. Authorisation stays with the live views (``projections/as_of``)."""

    views: AsOfViews
    db: Database
    queries: AsOfRegistryQueries
    identity_queries: AsOfIdentityQueries
    audit_queries: AuditQueries


def refusal(at_ms: int) -> str:
    """Why a write to the registry as of ``at_ms`` is refused."""
    return f"this registry serves its state as of {stamp(at_ms)}; it is read-only"


def location(layout: DataDir, live_db: Database, at_ms: int) -> str:
    if isinstance(live_db, PostgresDatabase):
        return f"PostgreSQL schema {as_of_schema(at_ms)}"
    return str(layout.as_of_views(at_ms))


def open_views(layout: DataDir, live_db: Database, at_ms: int) -> Database:
    """The database holding the views as of ``at_ms`` (created empty if missing)."""
    if isinstance(live_db, PostgresDatabase):
        with live_db.transaction() as c:
            c.execute(f"CREATE SCHEMA IF NOT EXISTS {as_of_schema(at_ms)}")
        return live_db.in_schema(as_of_schema(at_ms), pool_size=4)
    path = layout.as_of_views(at_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteDatabase(path)


def build(
    layout: DataDir,
    log: EventSource,
    live_db: Database,
    db: Database,
    at_ms: int,
    *,
    now_ms: int,
    progress: Callable[[int], None] | None = None,
    refresh: bool = True,
) -> AsOfViews:
    """Bring the views in ``db`` (from ``open_views``) to the registry as of ``at_ms``;
    without ``refresh``, only describe them as a build left them (``serve``'s workers:
    their parent built them)."""
    if at_ms > now_ms:
        raise AsOfError(f"{stamp(at_ms)} is in the future (it is {stamp(now_ms)})")
    source = TimeBoundSource(log, at_ms)
    # PERF: the indexes are built once at the end (a kept build has them already).
    runner = ProjectionRunner(db, source, batch_size=5000)
    if refresh:
        runner.create_tables(indexes=False)
        position = runner.catch_up(progress=progress)
        with db.transaction() as c:
            create_indexes(c, db.dialect)
        entries = copy_access_log(live_db, db, at_ms)
    else:
        position = runner.position()
        entries = int(db.query("SELECT COUNT(*) FROM access_log")[0][0])
    final = source.find_cut(position) is not None
    last = source.source.read(position - 1, 1) if position else []
    return AsOfViews(
        at_ms=at_ms,
        position=position,
        last_event_ms=last[0][1].hlc.wall_ms if last else None,
        final=final,
        access_entries=entries,
        location=location(layout, live_db, at_ms),
    )


def open_registry(
    layout: DataDir,
    log: EventSource,
    live_db: Database,
    live_queries: RegistryQueries,
    live_identity: IdentityQueries,
    at_ms: int,
    *,
    now_ms: int,
    refresh: bool = True,
    progress: Callable[[int], None] | None = None,
) -> AsOfRegistry:
    """The registry as of ``at_ms``, its views brought up to date first (``refresh``) or
    opened as a build left them. Raises ``AsOfError`` for a moment in the future."""
    db = open_views(layout, live_db, at_ms)
    try:
        views = build(
            layout, log, live_db, db, at_ms, now_ms=now_ms, progress=progress, refresh=refresh
        )
    except BaseException:
        db.close()
        raise
    return AsOfRegistry(
        views=views,
        db=db,
        queries=AsOfRegistryQueries(db, at_ms, live_queries),
        identity_queries=AsOfIdentityQueries(db, live_identity),
        audit_queries=AuditQueries(db),
    )


def drop(layout: DataDir, live_db: Database, at_ms: int) -> bool:
    """Remove the kept views as of ``at_ms``; whether there were any."""
    if isinstance(live_db, PostgresDatabase):
        schema = as_of_schema(at_ms)
        with live_db.transaction() as c:
            found = c.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", (schema,)
            ).fetchone()
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return found is not None
    return remove_sqlite(layout.as_of_views(at_ms))
