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
"""

from __future__ import annotations

from typing import Any

from cargohold.adapters.sql import Cursor
from cargohold.domain.accounts import Account, Organization
from cargohold.domain.repository import Repository, epoch_ms
from cargohold.projections.base import Handler, ProjectionCorrupt, event_time, record_tag_history


def _repository_name(c: Cursor, ns: str, e: Any) -> str:
    row = c.execute(
        f"SELECT name FROM {ns}repositories WHERE id = ?", (str(e.originator_id),)
    ).fetchone()
    if row is None:
        raise ProjectionCorrupt(f"event for unknown repository {e.originator_id}")
    return str(row[0])


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
        c.execute(
            f"UPDATE {ns}tag_lifetimes SET end_ms = ?, position = ? "
            "WHERE repository = ? AND tag = ? AND end_ms IS NULL",
            (end_ms, pos, repo, tag),
        )

    @staticmethod
    def _start(
        c: Cursor,
        ns: str,
        repo: str,
        tag: str,
        digest: str,
        start_ms: int,
        reversion: bool,
        pos: int,
    ) -> None:
        row = c.execute(
            f"SELECT layers_size, is_manifest_list FROM {ns}manifest_sizes "
            "WHERE repository = ? AND digest = ?",
            (repo, digest),
        ).fetchone()
        size, is_list = (None, 0) if row is None else (row[0], int(row[1]))
        c.execute(
            f"INSERT INTO {ns}tag_lifetimes (repository, tag, start_position, digest, start_ms, "
            "end_ms, expires_ms, reversion, size, is_manifest_list, position) "
            "VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?)",
            (repo, tag, pos, digest, start_ms, int(reversion), size, is_list, pos),
        )

    # -- manifests ---------------------------------------------------------------------

    def _manifest_pushed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        is_list = e.config is None  # an index: image manifests always have a config
        size = None if is_list else sum(layer.size for layer in e.layers)
        c.execute(
            f"INSERT INTO {ns}manifest_sizes (repository, digest, layers_size, "
            "is_manifest_list, position) VALUES (?, ?, ?, ?, ?)",
            (repo, str(e.digest), size, int(is_list), pos),
        )

    def _manifest_deleted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        c.execute(
            f"DELETE FROM {ns}manifest_sizes WHERE repository = ? AND digest = ?",
            (repo, str(e.digest)),
        )

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
        c.execute(
            f"INSERT INTO {ns}tags (repository, tag, digest, updated_at, position) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (repository, tag) DO UPDATE SET "
            "digest = excluded.digest, updated_at = excluded.updated_at, "
            "position = excluded.position",
            (repo, tag, str(e.to_digest), event_time(e), pos),
        )
        record_tag_history(c, ns, e, pos, repo, "restore", e.from_digest, e.to_digest)

    def _tag_expiration_changed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        tag = str(e.tag)
        expires = None if e.expires_at is None else epoch_ms(e.expires_at)
        update = (
            f"UPDATE {ns}tag_lifetimes SET expires_ms = ?, position = ? "
            "WHERE repository = ? AND tag = ? AND end_ms IS NULL"
        )
        c.execute(update, (expires, pos, repo, tag))
        if c.rowcount == 1:
            return
        # A tag moved before this view existed: start its lifetime from the tags row.
        row = c.execute(
            f"SELECT digest, position FROM {ns}tags WHERE repository = ? AND tag = ?",
            (repo, tag),
        ).fetchone()
        if row is None:
            raise ProjectionCorrupt(f"expiration of tag {tag} not in repository {repo}")
        self._start(c, ns, repo, tag, str(row[0]), e.hlc.wall_ms, False, int(row[1]))
        c.execute(update, (expires, pos, repo, tag))

    def _tag_expired(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        tag = str(e.tag)
        self._end(c, ns, repo, tag, epoch_ms(e.expires_at), pos)
        c.execute(f"DELETE FROM {ns}tags WHERE repository = ? AND tag = ?", (repo, tag))
        record_tag_history(c, ns, e, pos, repo, "expire", e.digest, None)

    def _repository_deleted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        repo = _repository_name(c, ns, e)
        for table in ("tag_lifetimes", "manifest_sizes"):
            c.execute(f"DELETE FROM {ns}{table} WHERE repository = ?", (repo,))

    # -- namespaces --------------------------------------------------------------------

    def _window(self, c: Cursor, ns: str, name: str, e: Any, pos: int) -> None:
        c.execute(
            f"INSERT INTO {ns}namespace_settings (name, tag_expiration_s, position) "
            "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "tag_expiration_s = excluded.tag_expiration_s, position = excluded.position",
            (name, e.seconds, pos),
        )

    def _account_window(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        self._window(c, ns, _name_of(c, ns, "accounts", e), e, pos)

    def _organization_window(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        self._window(c, ns, _name_of(c, ns, "organizations", e), e, pos)
