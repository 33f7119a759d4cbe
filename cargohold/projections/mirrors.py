"""The mirrors' projection: repository states and each mirror's settings and sync status.

``repository_states`` holds the repositories not in state NORMAL (a change back to NORMAL,
or the repository's deletion, removes the row). ``mirrors`` holds one row per live mirror
(``Deleted`` removes it, ``Reconfigured`` puts it back), as ``domain/mirror.Mirror``
applies its events: the settings (the password never: it stays sealed in the log), the
status, the schedule and the running sync's progress.
"""

from __future__ import annotations

import json
from typing import Any

from cargohold.domain.mirror import MAX_SYNC_RETRIES, Mirror, SyncStatus
from cargohold.domain.ports import Database
from cargohold.domain.repository import Repository
from cargohold.domain.repository_rules import RepositoryState, check_content_write
from cargohold.domain.values import Actor, RepositoryName
from cargohold.projections.base import Handler, repository_name
from cargohold.projections.writes import update_stream_row, write

_SETTINGS = (
    "external_reference",
    "username",
    "robot",
    "sync_interval",
    "tag_globs",
    "verify_tls",
    "unsigned_images",
    "proxy",
    "timeout_s",
    "architectures",
)


def _settings(e: Any) -> tuple[Any, ...]:
    return (
        e.external_reference,
        e.username,
        e.robot,
        e.sync_interval_s,
        json.dumps(list(e.tag_globs)),
        int(e.verify_tls),
        int(e.unsigned_images),
        None if e.proxy is None else json.dumps(e.proxy, sort_keys=True),
        e.timeout_s,
        json.dumps(list(e.architectures)),
    )


class MirrorProjector:
    """Handlers with the signature of ``RegistryProjector``'s, keyed by event class."""

    def handlers(self) -> dict[type, Handler]:
        return {
            Repository.StateChanged: self._state_changed,
            Mirror.Created: self._configured,
            Mirror.Changed: self._changed,
            Mirror.Enabled: lambda c, ns, e, pos: self._set(c, ns, e, pos, is_enabled=1),
            Mirror.Disabled: lambda c, ns, e, pos: self._set(c, ns, e, pos, is_enabled=0),
            Mirror.SyncRequested: self._sync_requested,
            Mirror.SyncStarted: self._sync_started,
            Mirror.SyncPlanned: lambda c, ns, e, pos: self._set(
                c, ns, e, pos, tags_total=e.tags_total, expires_ms=e.expires_ms
            ),
            Mirror.TagSynced: self._tag_synced,
            Mirror.TagFailed: self._tag_failed,
            Mirror.TagRemoved: self._tag_removed,
            Mirror.SyncFinished: lambda c, ns, e, pos: self._release(
                c, ns, e, pos, e.status, e.next_sync_ms, e.retries
            ),
            Mirror.SyncFailed: lambda c, ns, e, pos: self._release(
                c, ns, e, pos, SyncStatus.FAIL.name, e.next_sync_ms, e.retries, e.message
            ),
            Mirror.Cancelled: lambda c, ns, e, pos: self._release(
                c, ns, e, pos, SyncStatus.CANCEL.name, e.next_sync_ms, MAX_SYNC_RETRIES
            ),
            Mirror.Deleted: self._deleted,
            Mirror.Reconfigured: self._configured,
        }

    # -- repository states ---------------------------------------------------------------

    @staticmethod
    def _state_changed(c: Any, ns: str, e: Any, pos: int) -> None:
        repo = repository_name(c, ns, e)
        if e.state == RepositoryState.NORMAL.name:
            write(
                c,
                "repository_states",
                f"DELETE FROM {ns}repository_states WHERE repository = ?",
                (repo,),
            )
            return
        write(
            c,
            "repository_states",
            f"INSERT INTO {ns}repository_states (repository, state, position) VALUES (?, ?, ?) "
            "ON CONFLICT (repository) DO UPDATE SET state = excluded.state, "
            "position = excluded.position",
            (repo, e.state, pos),
        )

    # -- mirrors -------------------------------------------------------------------------

    @staticmethod
    def _configured(c: Any, ns: str, e: Any, pos: int) -> None:
        columns = (
            "id",
            "repository",
            "is_enabled",
            *_SETTINGS,
            "status",
            "next_sync_ms",
            "retries",
            "tags_total",
            "synced",
            "failed",
            "removed",
            "bytes",
            "position",
        )
        values = (
            str(e.originator_id),
            str(e.repository),
            int(e.enabled),
            *_settings(e),
            SyncStatus.NEVER_RUN.name,
            e.next_sync_ms,
            MAX_SYNC_RETRIES,
            0,
            0,
            0,
            0,
            0,
            pos,
        )
        write(
            c,
            "mirrors",
            f"INSERT INTO {ns}mirrors ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            values,
        )

    @staticmethod
    def _deleted(c: Any, ns: str, e: Any, pos: int) -> None:
        write(c, "mirrors", f"DELETE FROM {ns}mirrors WHERE id = ?", (str(e.originator_id),))

    def _changed(self, c: Any, ns: str, e: Any, pos: int) -> None:
        fields = dict(zip(_SETTINGS, _settings(e), strict=True))
        self._set(c, ns, e, pos, next_sync_ms=e.next_sync_ms, **fields)

    def _sync_requested(self, c: Any, ns: str, e: Any, pos: int) -> None:
        self._set(
            c,
            ns,
            e,
            pos,
            status=SyncStatus.SYNC_NOW.name,
            next_sync_ms=e.hlc.wall_ms,
            retries=MAX_SYNC_RETRIES,
        )

    def _sync_started(self, c: Any, ns: str, e: Any, pos: int) -> None:
        self._set(
            c,
            ns,
            e,
            pos,
            status=SyncStatus.SYNCING.name,
            claim=str(e.claim),
            expires_ms=e.expires_ms,
            started_ms=e.hlc.wall_ms,
            tags_total=0,
            synced=0,
            failed=0,
            removed=0,
            bytes=0,
            last_error=None,
        )

    @staticmethod
    def _tag_synced(c: Any, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "mirrors",
            f"UPDATE {ns}mirrors SET synced = synced + 1, bytes = bytes + ?, expires_ms = ?, "
            "position = ? WHERE id = ?",
            (e.bytes, e.expires_ms, pos, str(e.originator_id)),
        )

    @staticmethod
    def _tag_failed(c: Any, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "mirrors",
            f"UPDATE {ns}mirrors SET failed = failed + 1, last_error = ?, expires_ms = ?, "
            "position = ? WHERE id = ?",
            (f"{e.tag}: {e.message}", e.expires_ms, pos, str(e.originator_id)),
        )

    @staticmethod
    def _tag_removed(c: Any, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "mirrors",
            f"UPDATE {ns}mirrors SET removed = removed + 1, expires_ms = ?, position = ? "
            "WHERE id = ?",
            (e.expires_ms, pos, str(e.originator_id)),
        )

    def _release(
        self,
        c: Any,
        ns: str,
        e: Any,
        pos: int,
        status: str,
        next_sync_ms: int,
        retries: int,
        message: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "status": status,
            "next_sync_ms": next_sync_ms,
            "retries": retries,
            "claim": None,
            "expires_ms": None,
            "ended_ms": e.hlc.wall_ms,
        }
        if message is not None:
            fields["last_error"] = message
        self._set(c, ns, e, pos, **fields)

    @staticmethod
    def _set(c: Any, ns: str, e: Any, pos: int, **fields: Any) -> None:
        update_stream_row(c, ns, "mirrors", e, pos, **fields)


class MirrorQueries:
    """Reads of the mirrors' views."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def mirrored_by(self, robot: str) -> list[str]:
        """The repositories whose live mirror writes as ``robot`` (``ns+short``)."""
        rows = self.db.query(
            "SELECT repository FROM mirrors WHERE robot = ? ORDER BY repository", (robot,)
        )
        return [str(r[0]) for r in rows]

    def due(self, now_ms: int) -> list[str]:
        """The repositories (in state MIRROR) whose mirror a worker may claim at
        ``now_ms``, by the rules of ``Mirror.due``, longest waiting first."""
        with self.db.transaction() as c:
            rows = c.execute(
                "SELECT m.repository FROM mirrors m JOIN repository_states s "
                "ON s.repository = m.repository AND s.state = ? "
                "WHERE m.is_enabled = 1 AND ("
                "m.status = ? OR (m.status = ? AND m.expires_ms <= ?) "
                "OR (m.status NOT IN (?, ?) AND m.next_sync_ms <= ? AND m.retries > 0)) "
                "ORDER BY m.next_sync_ms, m.repository",
                (
                    RepositoryState.MIRROR.name,
                    SyncStatus.SYNC_NOW.name,
                    SyncStatus.SYNCING.name,
                    now_ms,
                    SyncStatus.SYNCING.name,
                    SyncStatus.SYNC_NOW.name,
                    now_ms,
                ),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def state(self, repository: str) -> str:
        """The repository's state (NORMAL when it has no row)."""
        return self._state(repository)[0]

    def check_content_write(self, repository: RepositoryName, actor: Actor) -> None:
        """``RepositoryStateDenied`` when the views already say the repository's state
        refuses ``actor``'s content writes: /v2 asks before it takes an upload's bytes
        (the commands check again, authoritatively, on the aggregate)."""
        state, robot = self._state(str(repository))
        check_content_write(repository, state, actor, robot)

    def _state(self, repository: str) -> tuple[str, str | None]:
        with self.db.transaction() as c:
            row = c.execute(
                "SELECT s.state, m.robot FROM repository_states s "
                "LEFT JOIN mirrors m ON m.repository = s.repository WHERE s.repository = ?",
                (repository,),
            ).fetchone()
        if row is None:
            return RepositoryState.NORMAL.name, None
        return str(row[0]), None if row[1] is None else str(row[1])
