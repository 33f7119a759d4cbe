"""Helpers of the geo-replication tests: comparing two sites' views."""

from __future__ import annotations

from typing import Any

from cargohold.domain.ports import Database
from cargohold.projections.schema import VIEW_TABLES

#: Columns holding a site's own log positions: the only ones two sites' views differ in.
LOCAL_COLUMNS = frozenset({"position", "start_position"})


def site_views(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every view's rows without the local position columns, sorted: equal at two sites
    that hold the same events (``projections/merge.py``)."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    for table in VIEW_TABLES:
        cols = [c for c in table.column_names if c not in LOCAL_COLUMNS]
        rows = db.query(f"SELECT {', '.join(cols)} FROM {table.name}")
        dump[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return dump
