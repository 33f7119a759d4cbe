"""``AuditWriter``: the audit log's handler in the projection pass.

``AuditWriter.write`` runs inside the projection pass (``RegistryProjector.apply``), in
the same cursor and transaction as the other views, *before* the event's own handler (so
a ``Deleted`` repository still has its name in ``repositories``, and a default
permission that is about to be replaced is still there to tell "create" from "modify").
The table is a view like any other: ``replay rebuild`` and ``verify`` cover it. Each
entry also adds 1 to its rows of ``audit_counts`` (``counts.py``: per scope, day
and kind), which the aggregates read.

Which entry an event becomes is ``kinds.py``'s table (``AuditMapper``); the columns and
the insert are ``entry.py``'s.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from cargohold.domain.ports import Cursor
from cargohold.projections.audit import counts as audit_counts
from cargohold.projections.audit.entry import dump_metadata, epoch_ms, insert_entry, iso
from cargohold.projections.audit.kinds import AUDIT_KINDS, AuditMapper
from cargohold.projections.base import ProjectionCorrupt


class AuditWriter:
    """Writes the entry of one event, in the projection's cursor."""

    def __init__(self, mapper: AuditMapper | None = None) -> None:
        self.mapper = mapper or AuditMapper()
        self._last_time: tuple[Any, str, int] = (None, "", 0)

    def write(
        self,
        c: Cursor,
        ns: str,
        event: Any,
        position: int,
        counts: Counter[audit_counts.CountKey] | None = None,
    ) -> None:
        """Insert the event's entry; its counts go to ``counts`` when given (the caller
        adds them to ``audit_counts`` before its transaction ends), else at once."""
        entry = self.mapper.entry(c, ns, event)
        if entry is None:
            return
        if entry.kind not in AUDIT_KINDS:  # pragma: no cover - a mapping table slip
            raise ProjectionCorrupt(f"audit kind {entry.kind!r} is not declared")
        moment: datetime = event.timestamp
        # PERF: one memo of the last time's text and milliseconds (see event_time).
        last = self._last_time
        if last[0] is not moment:
            last = self._last_time = (moment, iso(moment), epoch_ms(moment))
        actor = event.actor
        insert_entry(
            c,
            ns,
            (
                position,
                0,
                entry.kind,
                last[1],
                last[2],
                entry.namespace,
                entry.repository,
                actor.kind.value,
                actor.name,
                event.client_address,
                event.request_id,
                dump_metadata(entry.metadata),
                str(event.site_id),
            ),
            counts,
        )
