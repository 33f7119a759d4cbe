"""An audit entry as stored: its columns, how its time and metadata are written, and the
insert that also counts it.

Both tables of the audit log hold these columns: ``audit_log`` (one entry per event,
``writer``) and ``access_log`` (pulls and logins, ``access_log``); which entry an
event becomes is ``kinds.py``'s table.

Every entry has: ``position`` (the event's notification id) and ``sequence`` (0: one
entry per event; the key leaves room for more), ``kind``, ``time`` (ISO 8601, UTC) and
``time_ms`` (epoch milliseconds, for range queries), ``namespace``, ``repository`` (the
full ``ns/name``, or NULL), ``performer_kind`` (user, robot, anonymous, system, mirror,
site) and ``performer_name``, ``ip`` (the client address, NULL for CLI and system),
``request_id``, and ``metadata`` (a JSON object). Secrets never enter it: hashes and
tokens are left out. An ``audit_log`` entry also has ``site_id``: the site whose log its
event was written to (with geo peers, its origin; NULL in entries of views made before
the column, until ``replay rebuild``); an ``access_log`` entry is always this site's.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cargohold.domain.ports import Cursor
from cargohold.projections.audit import counts as audit_counts
from cargohold.projections.writes import write

#: The columns of an entry, in both tables (``access_log`` has ``id`` where this has
#: ``position, sequence``).
ENTRY_COLUMNS = (
    "kind",
    "time",
    "time_ms",
    "namespace",
    "repository",
    "performer_kind",
    "performer_name",
    "ip",
    "request_id",
    "metadata",
)


@dataclass(frozen=True)
class Entry:
    """What an event says in the audit log (the provenance columns come from the event)."""

    kind: str
    namespace: str | None
    repository: str | None
    metadata: dict[str, Any]


# PERF: json.dumps with options builds this encoder anew on every call.
_METADATA_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def dump_metadata(metadata: dict[str, Any]) -> str:
    return _METADATA_JSON.encode(metadata)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@functools.lru_cache(maxsize=16)
def _insert_sql(ns: str) -> str:
    return (
        f"INSERT INTO {ns}audit_log (position, sequence, {', '.join(ENTRY_COLUMNS)}, site_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )


def insert_entry(
    c: Cursor,
    ns: str,
    row: tuple[Any, ...],
    counts: Counter[audit_counts.CountKey] | None = None,
) -> None:
    """Insert one ``audit_log`` row (``position, sequence``, ``ENTRY_COLUMNS``, then
    ``site_id``) and add it to ``audit_counts`` in the caller's transaction: at once,
    or, given ``counts``, to ``counts``, which the caller adds (``audit_counts.add``)
    before it commits."""
    write(c, "audit_log", _insert_sql(ns), row)  # PERF: batched on a BatchedWrites cursor
    keys = audit_counts.keys_of(row[2], row[4], row[5], row[6])  # kind, time_ms, ns, repo
    if counts is not None:
        counts.update(keys)
    else:
        audit_counts.add(c, f"{ns}{audit_counts.AUDIT_COUNTS}", dict.fromkeys(keys, 1))
