"""The tag time machine's projection: tag lifetimes, manifest sizes, namespace windows.

``RegistryProjector`` runs these handlers *before* its own for the same event class (a
``Repository.Deleted`` must still find the repository's name), and takes the ones for
event classes it has no handler of (``TagRestored``, ``TagExpirationChanged``,
``TagExpired``, ``TagExpirationWindowSet``) as they are: those also write ``tags`` and
``tag_history``, as ``TagMoved`` and ``TagDeleted`` do there.

Rows (see ``schema.TAG_LIFETIMES``): a move or a restore ends the tag's live lifetime and
starts one; a deletion ends it at the event's time, an expiry at the expiration's time.
Lifetimes of tags moved before this view existed are missing until ``replay rebuild``;
an expiration set on such a tag starts a lifetime from the ``tags`` row, so it is never
lost.

PERF: the writes are queued on the ``BatchedWrites`` cursor like the registry's (a read
would flush every queue: replay spent most of its time there), and the manifest sizes
a lifetime copies are remembered per transaction (``BatchedWrites.manifest_sizes``).
"""

from __future__ import annotations

from typing import Any

from cargohold.domain.accounts import Account, Organization
from cargohold.domain.clock import epoch_ms
from cargohold.domain.ports import Cursor
from cargohold.domain.repository import Repository
from cargohold.projections.base import (
    Handler,
    ProjectionCorrupt,
    event_time,
    repository_name,
)
from cargohold.projections.writes import BatchedWrites, write

_repository_name = repository_name
_MISSING: Any = object()
_END_MS, _POSITION = 5, 10  # in a queued tag_lifetimes row (see _start)


def _name_of(c: Cursor, ns: str, table: str, e: Any) -> str:
    row = c.execute(
        f"SELECT name FROM {ns}{table} WHERE id = ?", (str(e.originator_id),)
    ).fetchone()
    if row is None:
        raise ProjectionCorrupt(f"event for unknown {table} row {e.originator_id}")
    return str(row[0])


class TimeMachineProjector:
    """Handlers with the signature of ``RegistryProjector``'s, keyed by event class."""

    def handlers(self) -> dict[type, Handler]:
        return {
            Repository.ManifestPushed: self._manifest_pushed,
            Repository.ManifestDeleted: self._manifest_deleted,
            Repository.TagMoved: self._tag_moved,
            Repository.TagDeleted: self._tag_deleted,
            Repository.TagRestored: self._tag_restored,
            Repository.TagExpirationChanged: self._tag_expiration_changed,
            Repository.TagExpired: self._tag_expired,
            Repository.Deleted: self._repository_deleted,
            Account.TagExpirationWindowSet: self._account_window,
            Organization.TagExpirationWindowSet: self._organization_window,
        }

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _end(c: Cursor, ns: str, repo: str, tag: str, end_ms: int, pos: int) -> None:
        sql = (
            f"UPDATE {ns}tag_lifetimes SET end_ms = ?, position = ? "
            "WHERE repository = ? AND tag = ? AND end_ms IS NULL"
        )
        if not isinstance(c, BatchedWrites):
            c.execute(sql, (end_ms, pos, repo, tag))
            return
        # PERF: ends and starts alternate; sent in that order, each would be a statement
        # of its own. So, between two flushes, for each (repository, tag):
        # - the live lifetime started since the last flush is still a queued row: end it
        #   there (``pending``) instead of updating it later;
        # - otherwise the UPDATE goes out before every INSERT queued since the flush
        #   (``defer_first``). That is the same: it changes rows of its own tag only,
        #   and no row of that tag inserted since the flush is live (the last one would
        #   be in ``pending``; the ones before it were ended there), so it changes the
        #   same rows (those live at the flush) whether it runs before or after them.
        #   Every other writer of tag_lifetimes flushes first (see the callers).
        row = c.pending.pop(("tag_lifetimes", repo, tag), None)
        if row is not None:
            row[_END_MS] = end_ms
            row[_POSITION] = pos
        else:
            c.defer_first("tag_lifetimes", sql, (end_ms, pos, repo, tag))

    @staticmethod
    def _size(c: Cursor, ns: str, repo: str, digest: str) -> tuple[int | None, int]:
        """``(layers_size, is_manifest_list)`` of the manifest, ``(None, 0)`` if unknown."""
        memo = c.manifest_sizes.setdefault(repo, {}) if isinstance(c, BatchedWrites) else {}
        found = memo.get(digest, _MISSING)
        if found is _MISSING:
            row = c.execute(
                f"SELECT layers_size, is_manifest_list FROM {ns}manifest_sizes "
                "WHERE repository = ? AND digest = ?",
                (repo, digest),
            ).fetchone()
            found = memo[digest] = None if row is None else (row[0], int(row[1]))
        return (None, 0) if found is None else found

    @classmethod
    def _start(
        cls,
        c: Cursor,
        ns: str,
        repo: str,
        tag: str,
        digest: str,
        start_ms: int,
        reversion: bool,
        pos: int,
    ) -> None:
        size, is_list = cls._size(c, ns, repo, digest)
        row = [repo, tag, pos, digest, start_ms, None, None, int(reversion), size, is_list, pos]
        write(
            c,
            "tag_lifetimes",
            f"INSERT INTO {ns}tag_lifetimes (repository, tag, start_position, digest, start_ms, "
            "end_ms, expires_ms, reversion, size, is_manifest_list, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        if isinstance(c, BatchedWrites):
            c.pending[("tag_lifetimes", repo, tag)] = row

    # -- manifests ---------------------------------------------------------------------

    def _manifest_pushed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        is_list = e.config is None  # an index: image manifests always have a config
        size = None if is_list else sum(layer.size for layer in e.layers)
        digest = str(e.digest)
        write(
            c,
            "manifest_sizes",
            f"INSERT INTO {ns}manifest_sizes (repository, digest, layers_size, "
            "is_manifest_list, position) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (repository, digest) DO UPDATE SET layers_size = excluded.layers_size, "
            "is_manifest_list = excluded.is_manifest_list, position = excluded.position",
            (repo, digest, size, int(is_list), pos),
        )
        if isinstance(c, BatchedWrites):
            c.manifest_sizes.setdefault(repo, {})[digest] = (size, int(is_list))

    def _manifest_deleted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        digest = str(e.digest)
        write(
            c,
            "manifest_sizes",
            f"DELETE FROM {ns}manifest_sizes WHERE repository = ? AND digest = ?",
            (repo, digest),
        )
        if isinstance(c, BatchedWrites):
            c.manifest_sizes.setdefault(repo, {})[digest] = None

    # -- tags --------------------------------------------------------------------------

    def _tag_moved(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        self._end(c, ns, repo, str(e.tag), e.hlc.wall_ms, pos)
        self._start(c, ns, repo, str(e.tag), str(e.to_digest), e.hlc.wall_ms, False, pos)

    def _tag_deleted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        self._end(c, ns, repo, str(e.tag), e.hlc.wall_ms, pos)

    def _tag_restored(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        tag = str(e.tag)
        self._end(c, ns, repo, tag, e.hlc.wall_ms, pos)
        self._start(c, ns, repo, tag, str(e.to_digest), e.hlc.wall_ms, True, pos)
        write(
            c,
            "tags",
            f"INSERT INTO {ns}tags (repository, tag, digest, updated_at, position) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (repository, tag) DO UPDATE SET "
            "digest = excluded.digest, updated_at = excluded.updated_at, "
            "position = excluded.position",
            (repo, tag, str(e.to_digest), event_time(e), pos),
        )

    def _tag_expiration_changed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        tag = str(e.tag)
        digest = str(e.digest)
        expires = None if e.expires_at is None else epoch_ms(e.expires_at)
        # NOTE: for the tag's lifetime at ``digest`` only: in the geo fold another site
        # may have moved or deleted the tag before it, and then it changes nothing.
        update = (
            f"UPDATE {ns}tag_lifetimes SET expires_ms = ?, position = ? "
            "WHERE repository = ? AND tag = ? AND end_ms IS NULL AND digest = ?"
        )
        c.execute(update, (expires, pos, repo, tag, digest))
        if c.rowcount == 1:
            return
        # A tag moved before this view existed: start its lifetime from the tags row.
        row = self._tag_row(c, ns, repo, tag)
        if row is None or row[0] != digest:
            return
        self._start(c, ns, repo, tag, digest, e.hlc.wall_ms, False, int(row[1]))
        c.execute(update, (expires, pos, repo, tag, digest))

    @staticmethod
    def _tag_row(c: Cursor, ns: str, repo: str, tag: str) -> tuple[Any, ...] | None:
        return c.execute(
            f"SELECT digest, position FROM {ns}tags WHERE repository = ? AND tag = ?",
            (repo, tag),
        ).fetchone()

    def _tag_expired(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        tag = str(e.tag)
        row = self._tag_row(c, ns, repo, tag)
        if row is None or row[0] != str(e.digest):
            return  # moved or deleted at another site before it (the geo fold)
        self._end(c, ns, repo, tag, epoch_ms(e.expires_at), pos)
        write(c, "tags", f"DELETE FROM {ns}tags WHERE repository = ? AND tag = ?", (repo, tag))

    def _repository_deleted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        for table in ("tag_lifetimes", "manifest_sizes"):
            c.execute(f"DELETE FROM {ns}{table} WHERE repository = ?", (repo,))
        if isinstance(c, BatchedWrites):
            c.manifest_sizes.pop(repo, None)

    # -- namespaces --------------------------------------------------------------------

    def _window(self, c: Cursor, ns: str, name: str, e: Any, pos: int) -> None:
        write(
            c,
            "namespace_settings",
            f"INSERT INTO {ns}namespace_settings (name, tag_expiration_s, position) "
            "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "tag_expiration_s = excluded.tag_expiration_s, position = excluded.position",
            (name, e.seconds, pos),
        )

    def _account_window(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        self._window(c, ns, _name_of(c, ns, "accounts", e), e, pos)

    def _organization_window(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        self._window(c, ns, _name_of(c, ns, "organizations", e), e, pos)
