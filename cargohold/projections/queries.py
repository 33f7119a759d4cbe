"""Query facade over the registry views: what GET handlers call. Never loads aggregates."""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cargohold.adapters.sql import Database
from cargohold.domain.values import Digest, RepositoryName, Tag
from cargohold.projections.runner import PROJECTION_NAME

T = TypeVar("T")

# PERF: digests read back from our own views were validated when they were written;
# re-validating one character by character cost ~15% of a manifest GET. Digest is
# immutable, so a hot digest's parsed value is shared (a bad row would still raise).
_view_digest = functools.lru_cache(maxsize=8192)(Digest.parse)

_MANIFEST_COLUMNS = (
    "m.repository, m.digest, m.media_type, m.size, m.config_digest, m.artifact_type, "
    "m.subject_digest, m.annotations"
)


@dataclass(frozen=True)
class ManifestRow:
    repository: str
    digest: Digest
    media_type: str
    size: int
    config_digest: str | None
    artifact_type: str | None
    subject_digest: str | None
    annotations: dict[str, str] | None


@dataclass(frozen=True)
class CurrentTag:
    tag: str
    digest: Digest
    updated_at: str  # ISO 8601, when the tag last moved


@dataclass(frozen=True)
class TagEvent:
    position: int
    tag: str
    action: str
    from_digest: str | None
    to_digest: str | None
    actor: str
    at: str


@dataclass(frozen=True)
class Referrer:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


def _annotations(text: Any) -> dict[str, str] | None:
    return None if text is None else dict(json.loads(text))


def _manifest_row(row: tuple[Any, ...]) -> ManifestRow:
    return ManifestRow(
        repository=row[0],
        digest=_view_digest(row[1]),
        media_type=row[2],
        size=int(row[3]),
        config_digest=row[4],
        artifact_type=row[5],
        subject_digest=row[6],
        annotations=_annotations(row[7]),
    )


class PositionCache:
    """Answers computed from the views, kept per process until the views move.

    ``get(key, compute)`` reads the projection's tracking position (one indexed row) and
    returns the value cached under ``key`` at that position, else ``compute()``'s. Every
    view write commits together with a move of that position, so an unchanged position
    means unchanged views, in whichever process or node wrote them: read-your-writes
    holds across ``--workers`` and hosts sharing the database. The position is read
    *before* ``compute()`` runs, so a value is never labelled newer than what it saw
    (on PostgreSQL each statement of ``compute`` may see a later commit; that only
    costs a recompute). NOTE: a ``replay rebuild`` that changes rows without moving the
    position (drift repair) is seen at the next event or restart.

    Bounded by ``max_bytes`` of ``size(value)`` over all entries, least recently used
    first out; a value larger than a quarter of it is not kept.
    """

    def __init__(
        self, queries: RegistryQueries, size: Callable[[Any], int], max_bytes: int
    ) -> None:
        self.queries = queries
        self.size = size
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[int, Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], T]) -> T:
        position = self.queries.views_position()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == position:
                self._entries.move_to_end(key)
                return hit[1]  # type: ignore[no-any-return]
        value = compute()
        size = self.size(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            if size <= self.max_bytes // 4:
                self._entries[key] = (position, value, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, _, dropped) = self._entries.popitem(last=False)
                    self._bytes -= dropped
        return value


class RegistryQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def repository_exists(self, name: RepositoryName) -> bool:
        return bool(self.db.query("SELECT 1 FROM repositories WHERE name = ?", (str(name),)))

    def views_position(self) -> int:
        """The log position the views have applied (0 before the first event)."""
        rows = self.db.query("SELECT position FROM tracking WHERE name = ?", (PROJECTION_NAME,))
        return int(rows[0][0]) if rows else 0

    def catalog(self, n: int | None = None, last: str | None = None) -> list[str]:
        """Repository names in lexical order, after ``last``, at most ``n``."""
        sql = "SELECT name FROM repositories WHERE name > ? ORDER BY name"
        params: list[Any] = [last or ""]
        if n is not None:
            sql += " LIMIT ?"
            params.append(n)
        with self.db.transaction(write=False) as c:
            return [str(r[0]) for r in c.execute(sql, params).fetchall()]

    def tags(
        self, name: RepositoryName, n: int | None = None, last: str | None = None
    ) -> list[str]:
        """Tags of a repository in lexical order, after ``last``, at most ``n``."""
        sql = "SELECT tag FROM tags WHERE repository = ? AND tag > ? ORDER BY tag"
        params: list[Any] = [str(name), last or ""]
        if n is not None:
            sql += " LIMIT ?"
            params.append(n)
        return [r[0] for r in self.db.query(sql, params)]

    def current_tags(self, name: RepositoryName, n: int) -> list[CurrentTag]:
        """The first ``n`` tags of a repository in lexical order, with what they point at
        and when they last moved (one query)."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT tag, digest, updated_at FROM tags WHERE repository = ? "
                "ORDER BY tag LIMIT ?",
                (str(name), n),
            ).fetchall()
        return [CurrentTag(str(r[0]), _view_digest(r[1]), str(r[2])) for r in rows]

    def visibilities(self, names: list[str]) -> dict[str, str]:
        """Repository name -> visibility, for the live repositories among ``names``."""
        if not names:
            return {}
        marks = ", ".join("?" for _ in names)
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                f"SELECT name, visibility FROM repositories WHERE name IN ({marks})", names
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def resolve_tag(self, name: RepositoryName, tag: Tag) -> Digest | None:
        rows = self.db.query(
            "SELECT digest FROM tags WHERE repository = ? AND tag = ?", (str(name), str(tag))
        )
        return _view_digest(rows[0][0]) if rows else None

    def manifest(self, name: RepositoryName, digest: Digest) -> ManifestRow | None:
        rows = self.db.query(
            f"SELECT {_MANIFEST_COLUMNS} FROM manifests m WHERE m.repository = ? AND m.digest = ?",
            (str(name), str(digest)),
        )
        return _manifest_row(rows[0]) if rows else None

    def tagged_manifest(self, name: RepositoryName, tag: Tag) -> ManifestRow | None:
        """The manifest ``tag`` points at: ``resolve_tag`` and ``manifest`` in one query."""
        # PERF: one statement (one snapshot) instead of two read transactions.
        rows = self.db.query(
            f"SELECT {_MANIFEST_COLUMNS} FROM tags t JOIN manifests m "
            "ON m.repository = t.repository AND m.digest = t.digest "
            "WHERE t.repository = ? AND t.tag = ?",
            (str(name), str(tag)),
        )
        return _manifest_row(rows[0]) if rows else None

    def blob_size(self, name: RepositoryName, digest: Digest) -> int | None:
        """Size of a blob linked into the repository, or None if it is not linked."""
        rows = self.db.query(
            "SELECT size FROM blob_links WHERE repository = ? AND digest = ?",
            (str(name), str(digest)),
        )
        return int(rows[0][0]) if rows else None

    def referrers(
        self, name: RepositoryName, subject: Digest, artifact_type: str | None = None
    ) -> list[Referrer]:
        sql = (
            "SELECT digest, media_type, size, artifact_type, annotations FROM referrers "
            "WHERE repository = ? AND subject_digest = ?"
        )
        params: list[Any] = [str(name), str(subject)]
        if artifact_type is not None:
            sql += " AND artifact_type = ?"
            params.append(artifact_type)
        with self.db.transaction(write=False) as c:
            rows = c.execute(sql + " ORDER BY digest", params).fetchall()
        return [Referrer(r[0], r[1], int(r[2]), r[3], _annotations(r[4])) for r in rows]

    def tag_history(self, name: RepositoryName, tag: Tag | None = None) -> list[TagEvent]:
        """Every move and deletion of the repository's tags (or one tag), oldest first."""
        sql = (
            "SELECT position, tag, action, from_digest, to_digest, actor_kind, actor_name, at "
            "FROM tag_history WHERE repository = ?"
        )
        params: list[Any] = [str(name)]
        if tag is not None:
            sql += " AND tag = ?"
            params.append(str(tag))
        with self.db.transaction(write=False) as c:
            rows = c.execute(sql + " ORDER BY position", params).fetchall()
        return [
            TagEvent(int(r[0]), r[1], r[2], r[3], r[4], f"{r[5]}:{r[6]}" if r[6] else r[5], r[7])
            for r in rows
        ]

    def repositories_with_blob(self, digest: Digest) -> list[str]:
        """Repositories the blob is linked into, in name order."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT repository FROM blob_links WHERE digest = ? ORDER BY repository",
                (str(digest),),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def visibility(self, name: RepositoryName) -> str | None:
        """ "public" or "private", or None for an unknown repository."""
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT visibility FROM repositories WHERE name = ?", (str(name),)
            ).fetchone()
        return None if row is None else str(row[0])

    def permissions(self, name: RepositoryName) -> list[tuple[str, str, str]]:
        """Explicit grants on a repository: (principal kind, principal name, role)."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT principal_kind, principal_name, role FROM repository_permissions "
                "WHERE repository = ? ORDER BY principal_kind, principal_name",
                (str(name),),
            ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]
