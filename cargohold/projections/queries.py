"""Query facade over the registry views: what GET handlers call. Never loads aggregates."""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cargohold.domain.clock import system_wall_ms
from cargohold.domain.ports import Database
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

# NOTE: a live tag whose expiration has passed is gone for every reader at once, before
# the sweeper records its ``TagExpired``. ``t`` is the ``tags`` row; the one parameter
# is the current time in milliseconds.
_NOT_EXPIRED = (
    "NOT EXISTS (SELECT 1 FROM tag_lifetimes l WHERE l.repository = t.repository "
    "AND l.tag = t.tag AND l.end_ms IS NULL AND l.expires_ms <= ?)"
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
class TagLifetime:
    """One lifetime of a tag (Quay's tag history row). Times in epoch milliseconds;
    ``end_ms`` is when it ended, or, for a live tag, its expiration (``None``: neither)."""

    tag: str
    digest: Digest
    start_ms: int
    end_ms: int | None
    reversion: bool
    size: int | None
    is_manifest_list: bool


@dataclass(frozen=True)
class Referrer:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


def _annotations(text: Any) -> dict[str, str] | None:
    return None if text is None else dict(json.loads(text))


def _first_int(*values: Any) -> int | None:
    """The first value that is not NULL, as an int."""
    return next((int(v) for v in values if v is not None), None)


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

    def get(
        self, key: Any, compute: Callable[[], T], fresh: Callable[[T], bool] | None = None
    ) -> T:
        """``fresh(value)``, when given, can also turn a hit down: for answers that
        change with time alone (a tag whose expiration passes leaves a listing although
        no event moved the views)."""
        position = self.queries.views_position()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == position and (fresh is None or fresh(hit[1])):
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
    """``now_ms`` is the wall clock that decides which tags have expired (injectable)."""

    def __init__(self, db: Database, now_ms: Callable[[], int] = system_wall_ms) -> None:
        self.db = db
        self.now_ms = now_ms

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
        sql = (
            f"SELECT tag FROM tags t WHERE repository = ? AND tag > ? AND {_NOT_EXPIRED} "
            "ORDER BY tag"
        )
        params: list[Any] = [str(name), last or "", self.now_ms()]
        if n is not None:
            sql += " LIMIT ?"
            params.append(n)
        return [r[0] for r in self.db.query(sql, params)]

    def current_tags(self, name: RepositoryName, n: int) -> list[CurrentTag]:
        """The first ``n`` tags of a repository in lexical order, with what they point at
        and when they last moved (one query)."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                f"SELECT tag, digest, updated_at FROM tags t WHERE repository = ? "
                f"AND {_NOT_EXPIRED} ORDER BY tag LIMIT ?",
                (str(name), self.now_ms(), n),
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
            f"SELECT digest FROM tags t WHERE repository = ? AND tag = ? AND {_NOT_EXPIRED}",
            (str(name), str(tag), self.now_ms()),
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
            f"WHERE t.repository = ? AND t.tag = ? AND {_NOT_EXPIRED}",
            (str(name), str(tag), self.now_ms()),
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

    def repositories_with_blob(
        self, digest: Digest, after: str = "", limit: int | None = None
    ) -> list[str]:
        """Repositories the blob is linked into, in name order, after ``after``; at most
        ``limit`` of them (None: all)."""
        sql = "SELECT repository FROM blob_links WHERE digest = ? AND repository > ? "
        sql += "ORDER BY repository" + ("" if limit is None else f" LIMIT {int(limit)}")
        rows = self.db.query(sql, (str(digest), after))
        return [str(r[0]) for r in rows]

    def visibility(self, name: RepositoryName) -> str | None:
        """ "public" or "private", or None for an unknown repository."""
        # PERF: one statement, no BEGIN/COMMIT (an anonymous pull asks this every time).
        rows = self.db.query("SELECT visibility FROM repositories WHERE name = ?", (str(name),))
        return str(rows[0][0]) if rows else None

    def permissions(self, name: RepositoryName) -> list[tuple[str, str, str]]:
        """Explicit grants on a repository: (principal kind, principal name, role)."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT principal_kind, principal_name, role FROM repository_permissions "
                "WHERE repository = ? ORDER BY principal_kind, principal_name",
                (str(name),),
            ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    # -- the tag time machine ----------------------------------------------------------

    def tag_lifetimes(
        self,
        name: RepositoryName,
        *,
        page: int = 1,
        limit: int = 50,
        only_active: bool = False,
        specific_tag: str | None = None,
    ) -> tuple[list[TagLifetime], bool]:
        """Page ``page`` (from 1) of the repository's tag lifetimes, newest start first
        then by name (Quay's order), and whether there are more. ``only_active``: live
        and not expired; ``specific_tag``: that tag's lifetimes only (exact name)."""
        now = self.now_ms()
        sql = (
            "SELECT tag, digest, start_ms, end_ms, expires_ms, reversion, size, "
            "is_manifest_list FROM tag_lifetimes WHERE repository = ?"
        )
        params: list[Any] = [str(name)]
        if only_active:
            sql += " AND end_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?)"
            params.append(now)
        if specific_tag is not None:
            sql += " AND tag = ?"
            params.append(specific_tag)
        sql += " ORDER BY start_ms DESC, tag, start_position DESC LIMIT ? OFFSET ?"
        params += [limit + 1, limit * (page - 1)]
        with self.db.transaction(write=False) as c:
            rows = c.execute(sql, params).fetchall()
        lifetimes = [
            TagLifetime(
                tag=str(r[0]),
                digest=Digest.parse(r[1]),
                start_ms=int(r[2]),
                end_ms=_first_int(r[3], r[4]),
                reversion=bool(r[5]),
                size=None if r[6] is None else int(r[6]),
                is_manifest_list=bool(r[7]),
            )
            for r in rows[:limit]
        ]
        return lifetimes, len(rows) > limit

    def next_tag_expiry_ms(self, name: RepositoryName) -> int | None:
        """When the repository's next live tag expires (epoch ms), if one has an
        expiration to come: until then, a listing of its tags cannot change by time."""
        rows = self.db.query(
            "SELECT MIN(expires_ms) FROM tag_lifetimes WHERE repository = ? "
            "AND end_ms IS NULL AND expires_ms > ?",
            (str(name), self.now_ms()),
        )
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def repositories_with_due_expirations(
        self, limit: int = 100, site_id: str | None = None
    ) -> list[RepositoryName]:
        """Repositories holding a live tag whose expiration has passed (for the sweeper).

        With ``site_id``, only that site's own: the origin of an imported repository
        records its expiries (and they would otherwise fill every page).
        """
        sql = (
            "SELECT DISTINCT repository FROM tag_lifetimes WHERE end_ms IS NULL AND expires_ms <= ?"
        )
        params: list[Any] = [self.now_ms()]
        if site_id is not None:
            sql += (
                " AND repository NOT IN (SELECT name FROM stream_origins "
                "WHERE kind = 'repository' AND site_id <> ?)"
            )
            params.append(site_id)
        with self.db.transaction(write=False) as c:
            rows = c.execute(f"{sql} ORDER BY repository LIMIT ?", (*params, limit)).fetchall()
        return [RepositoryName(r[0]) for r in rows]

    def tag_expiration_window(self, namespace: str) -> int | None:
        """The namespace's time-machine window in seconds, if it set one."""
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT tag_expiration_s FROM namespace_settings WHERE name = ?", (namespace,)
            ).fetchone()
        return None if row is None else int(row[0])
