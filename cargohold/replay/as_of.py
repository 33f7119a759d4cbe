"""Build the views of the registry as it stood at a moment (``replay as-of``).

What "as of T" means is in ``projections/as_of.py``. The views are kept, so that
``serve --as-of T`` (and every worker it forks) opens them at once:

- on the embedded default, in ``<data_dir>/as-of/views-<T>.sqlite``;
- on PostgreSQL, in the schema ``cargohold_as_of_<T in epoch ms>`` of the same database.

A build catches up from where a kept one stopped, one transaction per batch with its
tracking position, like the live projection: a build killed halfway resumes, and a
build whose cut was met (a later event exists) is final. The pulls and logins up to T
are copied from the live ``access_log`` (not a view; see ``projections/access_log.py``).
``drop`` removes a kept build.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cargohold.adapters.eventstore import LogReader
from cargohold.adapters.sql import Database, PostgresDatabase, SQLiteDatabase
from cargohold.commands.registry import RegistryLog
from cargohold.config import Settings
from cargohold.projections.access_log import copy_access_log
from cargohold.projections.as_of import TimeBoundSource
from cargohold.projections.runner import ProjectionRunner
from cargohold.projections.schema import create_indexes


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


def stamp(at_ms: int) -> str:
    """``at_ms`` as ISO 8601 UTC with milliseconds (``2026-11-24T15:00:00.000Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000)) + (
        f".{at_ms % 1000:03d}Z"
    )


def _sqlite_path(settings: Settings, at_ms: int) -> Path:
    compact = stamp(at_ms).replace("-", "").replace(":", "")
    return Path(settings.data_dir) / "as-of" / f"views-{compact}.sqlite"


def _schema(at_ms: int) -> str:
    return f"cargohold_as_of_{at_ms}"


def location(settings: Settings, at_ms: int) -> str:
    if settings.uses_postgres:
        return f"PostgreSQL schema {_schema(at_ms)}"
    return str(_sqlite_path(settings, at_ms))


def open_views(settings: Settings, live_db: Database, at_ms: int) -> Database:
    """The database holding the views as of ``at_ms`` (created empty if missing)."""
    if isinstance(live_db, PostgresDatabase):
        with live_db.transaction() as c:
            c.execute(f"CREATE SCHEMA IF NOT EXISTS {_schema(at_ms)}")
        return PostgresDatabase(live_db.settings, pool_size=4, schema=_schema(at_ms))
    path = _sqlite_path(settings, at_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteDatabase(path)


def build(
    settings: Settings,
    log: RegistryLog,
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
    source = TimeBoundSource(LogReader(log), at_ms)
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
        location=location(settings, at_ms),
    )


def drop(settings: Settings, live_db: Database, at_ms: int) -> bool:
    """Remove the kept views as of ``at_ms``; whether there were any."""
    if isinstance(live_db, PostgresDatabase):
        schema = _schema(at_ms)
        with live_db.transaction() as c:
            found = c.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", (schema,)
            ).fetchone()
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return found is not None
    path = _sqlite_path(settings, at_ms)
    existed = path.exists()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return existed
