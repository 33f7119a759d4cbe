"""The registry projection: folds ``Repository`` events into the views of ``schema``, and,
through ``IdentityProjector``, the events of the identity aggregates that share its log.

``apply`` is pure SQL against one cursor, so the runner can write the rows and the
tracking position in one transaction. An event it does not know stops the projection
(``UnknownEvent``): a skipped event is a silently wrong read model.

A deleted repository loses its rows everywhere but in ``tag_history`` (the audit trail);
its id and name move to ``deleted_repositories`` until a ``Recreated`` brings them back.
So every query over ``repositories`` sees live repositories only, with no filter.

PERF: the registry's handlers queue their row writes on a ``BatchedWrites`` cursor (see
``writes``), which the runner flushes once per batch, and look a repository's name up
once per batch. ``apply`` given a plain cursor wraps and flushes it itself.

Every event also becomes one ``audit_log`` entry (``projections/audit/kinds.py``: which one;
``audit/writer.py``: its writer), written in the same transaction, before the event's
own handler.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from cargohold.domain.ports import Cursor
from cargohold.domain.repository import Repository
from cargohold.domain.values import Descriptor
from cargohold.projections.audit import counts as audit_counts
from cargohold.projections.audit.counts import CountKey
from cargohold.projections.audit.writer import AuditWriter
from cargohold.projections.base import (
    Handler,
    ProjectionCorrupt,
    UnknownEvent,
    event_time,
    repository_name,
    stream_name,
)
from cargohold.projections.identity import IdentityProjector
from cargohold.projections.merge import (
    GeoFold,
    StreamHistory,
    forget,
    insert_live,
    name_state,
    revive,
)
from cargohold.projections.mirrors import MirrorProjector
from cargohold.projections.proxy_caches import ProxyCacheProjector
from cargohold.projections.time_machine import TimeMachineProjector
from cargohold.projections.writes import BatchedWrites

__all__ = ["ProjectionCorrupt", "RegistryProjector", "UnknownEvent"]

#: The tables holding a repository's content, keyed by its name in ``repository``.
_CONTENT_TABLES = (
    "blob_links",
    "manifests",
    "tags",
    "referrers",
    "repository_permissions",
    "repository_states",
)


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


_BatchedHandler = Callable[[BatchedWrites, str, Any, int], None]


def _chained(first: Handler, then: _BatchedHandler | None) -> _BatchedHandler:
    if then is None:
        return first

    def both(c: BatchedWrites, ns: str, event: Any, position: int) -> None:
        first(c, ns, event, position)
        then(c, ns, event, position)

    return both


class RegistryProjector:
    """Applies one domain event at notification ``position`` into namespace ``ns``."""

    def __init__(self) -> None:
        self.audit = AuditWriter()
        self._handlers: dict[type, Callable[[BatchedWrites, str, Any, int], None]] = {
            Repository.Created: self._created,
            Repository.BlobLinked: self._blob_linked,
            Repository.BlobUnlinked: self._blob_unlinked,
            Repository.ManifestPushed: self._manifest_pushed,
            Repository.TagMoved: self._tag_moved,
            Repository.TagDeleted: self._tag_deleted,
            Repository.ManifestDeleted: self._manifest_deleted,
            Repository.PermissionGranted: self._permission_granted,
            Repository.PermissionRevoked: self._permission_revoked,
            Repository.VisibilityChanged: self._visibility_changed,
            Repository.Deleted: self._deleted,
            Repository.Recreated: self._recreated,
            **IdentityProjector().handlers(),
            **MirrorProjector().handlers(),
            **ProxyCacheProjector().handlers(),
        }
        # The tag time machine: its handler runs first, then ours for the same class.
        for event_class, extra in TimeMachineProjector().handlers().items():
            self._handlers[event_class] = _chained(extra, self._handlers.get(event_class))
        # Every site's streams of a repository name fold into one (merge.py).
        self._repository_events = frozenset(
            cls for cls in self._handlers if issubclass(cls, Repository.Event)
        )
        self.geo = GeoFold(self._handlers)

    @property
    def event_classes(self) -> frozenset[type]:
        """The event classes this projector applies; any other stops it."""
        return frozenset(self._handlers)

    def apply(
        self,
        c: Cursor,
        ns: str,
        event: Any,
        position: int,
        counts: Counter[CountKey] | None = None,
    ) -> None:
        """Apply ``event``. Its audit counts are upserted at once, or, given ``counts``,
        added to it for ``add_counts`` at the end of the batch (PERF: a batch of 1,000
        events then costs a few hundred upserts instead of up to three per event). On a
        ``BatchedWrites`` cursor its writes may stay queued until the caller flushes it;
        on any other cursor they are done on return."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise UnknownEvent(
                f"no projection for {type(event).__qualname__} at position {position}"
            )
        if not isinstance(c, BatchedWrites):
            writes = BatchedWrites(c)
            self.apply(writes, ns, event, position, counts)
            self.finish_batch(writes, ns, position, None)
            writes.flush()
            return
        # NOTE: the audit entry first: it reads names the handler may move or remove.
        self.audit.write(c, ns, event, position, counts)
        if type(event) in self._repository_events:
            self.geo.apply(c, ns, event, position)
        else:
            handler(c, ns, event, position)

    def finish_batch(
        self, c: BatchedWrites, ns: str, through: int, history: StreamHistory | None
    ) -> None:
        """Before ``c`` is flushed at the end of a batch (last position ``through``): fold
        again the repository names whose events arrived out of merge order, from
        ``history`` (the log; see ``merge.py``)."""
        self.geo.finish(c, ns, through, history)

    @staticmethod
    def add_counts(c: Cursor, ns: str, counts: Counter[CountKey]) -> None:
        """Add the audit counts gathered by ``apply`` (in the same transaction)."""
        audit_counts.add(c, f"{ns}{audit_counts.AUDIT_COUNTS}", counts)

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _repository_name(c: BatchedWrites, ns: str, event: Any) -> str:
        return repository_name(c, ns, event)

    # -- handlers ----------------------------------------------------------------------

    def _created(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        name = str(e.name)
        state = name_state(c, ns, name)
        if state == "live":  # another site's stream of the name made it: this one joins
            c.repository_names[e.originator_id] = name
            return
        if state == "deleted":
            revive(c, ns, e, name, pos)
        else:
            insert_live(c, ns, e, name, pos)

    def _blob_linked(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        c.defer(
            "blob_links",
            f"INSERT INTO {ns}blob_links (repository, digest, size, linked_at, position) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (repository, digest) DO UPDATE SET "
            "size = excluded.size, linked_at = excluded.linked_at, position = excluded.position",
            (repo, str(e.digest), e.size, event_time(e), pos),
        )

    def _blob_unlinked(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        c.defer(
            "blob_links",
            f"DELETE FROM {ns}blob_links WHERE repository = ? AND digest = ?",
            (repo, str(e.digest)),
        )

    def _manifest_pushed(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        config: Descriptor | None = e.config
        subject: Descriptor | None = e.subject
        artifact_type = e.artifact_type or (config.media_type if config is not None else None)
        c.defer(
            "manifests",
            f"INSERT INTO {ns}manifests (repository, digest, media_type, size, config_digest, "
            "artifact_type, subject_digest, annotations, pushed_at, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repository, digest) DO UPDATE "
            # NOTE: pushed at two sites (the same bytes): the later push's row.
            "SET media_type = excluded.media_type, size = excluded.size, "
            "config_digest = excluded.config_digest, artifact_type = excluded.artifact_type, "
            "subject_digest = excluded.subject_digest, annotations = excluded.annotations, "
            "pushed_at = excluded.pushed_at, position = excluded.position",
            (
                repo,
                str(e.digest),
                str(e.media_type),
                e.size,
                None if config is None else str(config.digest),
                None if artifact_type is None else str(artifact_type),
                None if subject is None else str(subject.digest),
                _json(e.annotations),
                event_time(e),
                pos,
            ),
        )
        if subject is not None:
            c.defer(
                "referrers",
                f"INSERT INTO {ns}referrers (repository, subject_digest, digest, media_type, "
                "size, artifact_type, annotations, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (repository, subject_digest, digest) DO UPDATE SET "
                "media_type = excluded.media_type, size = excluded.size, "
                "artifact_type = excluded.artifact_type, annotations = excluded.annotations, "
                "position = excluded.position",
                (
                    repo,
                    str(subject.digest),
                    str(e.digest),
                    str(e.media_type),
                    e.size,
                    None if artifact_type is None else str(artifact_type),
                    _json(e.annotations),
                    pos,
                ),
            )

    def _manifest_deleted(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        digest = str(e.digest)
        c.defer(
            "manifests",
            f"DELETE FROM {ns}manifests WHERE repository = ? AND digest = ?",
            (repo, digest),
        )
        c.defer(
            "referrers",
            f"DELETE FROM {ns}referrers WHERE repository = ? AND digest = ?",
            (repo, digest),
        )

    def _tag_moved(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        c.defer(
            "tags",
            f"INSERT INTO {ns}tags (repository, tag, digest, updated_at, position) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (repository, tag) DO UPDATE SET "
            "digest = excluded.digest, updated_at = excluded.updated_at, "
            "position = excluded.position",
            (repo, str(e.tag), str(e.to_digest), event_time(e), pos),
        )

    def _tag_deleted(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        c.defer(
            "tags", f"DELETE FROM {ns}tags WHERE repository = ? AND tag = ?", (repo, str(e.tag))
        )

    def _permission_granted(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        c.defer(
            "repository_permissions",
            f"INSERT INTO {ns}repository_permissions (repository, principal_kind, "
            "principal_name, role, position) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (repository, principal_kind, principal_name) DO UPDATE SET "
            "role = excluded.role, position = excluded.position",
            (repo, e.principal.kind.value, e.principal.name, e.role.value, pos),
        )

    def _permission_revoked(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        c.defer(
            "repository_permissions",
            f"DELETE FROM {ns}repository_permissions WHERE repository = ? "
            "AND principal_kind = ? AND principal_name = ?",
            (repo, e.principal.kind.value, e.principal.name),
        )

    def _visibility_changed(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        c.defer(
            "repositories",
            f"UPDATE {ns}repositories SET visibility = ?, position = ? WHERE name = ?",
            (e.visibility.value, pos, self._repository_name(c, ns, e)),
        )

    def _deleted(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        repo = self._repository_name(c, ns, e)
        for table in _CONTENT_TABLES:
            c.defer(table, f"DELETE FROM {ns}{table} WHERE repository = ?", (repo,))
        c.defer("repositories", f"DELETE FROM {ns}repositories WHERE name = ?", (repo,))
        forget(c, repo)
        c.defer(
            "deleted_repositories",
            f"INSERT INTO {ns}deleted_repositories (id, name, deleted_at, position) "
            "VALUES (?, ?, ?, ?)",
            (str(e.originator_id), repo, event_time(e), pos),
        )

    def _recreated(self, c: BatchedWrites, ns: str, e: Any, pos: int) -> None:
        name = stream_name(c, ns, e)
        state = name_state(c, ns, name)
        if state == "live":  # another site's content brought it back
            c.repository_names[e.originator_id] = name
            return
        if state != "deleted":
            raise ProjectionCorrupt(f"recreation of repository {name}, which the views do not hold")
        revive(c, ns, e, name, pos)
