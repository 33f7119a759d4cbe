"""Query facade over the registry views: what GET handlers call. Never loads aggregates."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cargohold.adapters.sql import Database
from cargohold.domain.clock import system_wall_ms
from cargohold.domain.values import Digest, RepositoryName, Tag

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


class RegistryQueries:
    """``now_ms`` is the wall clock that decides which tags have expired (injectable)."""

    def __init__(self, db: Database, now_ms: Callable[[], int] = system_wall_ms) -> None:
        self.db = db
        self.now_ms = now_ms

    def repository_exists(self, name: RepositoryName) -> bool:
        with self.db.transaction(write=False) as c:
            row = c.execute("SELECT 1 FROM repositories WHERE name = ?", (str(name),)).fetchone()
        return row is not None

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
        with self.db.transaction(write=False) as c:
            return [str(r[0]) for r in c.execute(sql, params).fetchall()]

    def current_tags(self, name: RepositoryName, n: int) -> list[CurrentTag]:
        """The first ``n`` tags of a repository in lexical order, with what they point at
        and when they last moved (one query)."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                f"SELECT tag, digest, updated_at FROM tags t WHERE repository = ? "
                f"AND {_NOT_EXPIRED} ORDER BY tag LIMIT ?",
                (str(name), self.now_ms(), n),
            ).fetchall()
        return [CurrentTag(str(r[0]), Digest.parse(r[1]), str(r[2])) for r in rows]

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
        with self.db.transaction(write=False) as c:
            row = c.execute(
                f"SELECT digest FROM tags t WHERE repository = ? AND tag = ? AND {_NOT_EXPIRED}",
                (str(name), str(tag), self.now_ms()),
            ).fetchone()
        return None if row is None else Digest.parse(row[0])

    def manifest(self, name: RepositoryName, digest: Digest) -> ManifestRow | None:
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT repository, digest, media_type, size, config_digest, artifact_type, "
                "subject_digest, annotations FROM manifests WHERE repository = ? AND digest = ?",
                (str(name), str(digest)),
            ).fetchone()
        if row is None:
            return None
        return ManifestRow(
            repository=row[0],
            digest=Digest.parse(row[1]),
            media_type=row[2],
            size=int(row[3]),
            config_digest=row[4],
            artifact_type=row[5],
            subject_digest=row[6],
            annotations=_annotations(row[7]),
        )

    def blob_size(self, name: RepositoryName, digest: Digest) -> int | None:
        """Size of a blob linked into the repository, or None if it is not linked."""
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT size FROM blob_links WHERE repository = ? AND digest = ?",
                (str(name), str(digest)),
            ).fetchone()
        return None if row is None else int(row[0])

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

    def repositories_with_due_expirations(self, limit: int = 100) -> list[RepositoryName]:
        """Repositories holding a live tag whose expiration has passed (for the sweeper)."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT DISTINCT repository FROM tag_lifetimes WHERE end_ms IS NULL "
                "AND expires_ms <= ? ORDER BY repository LIMIT ?",
                (self.now_ms(), limit),
            ).fetchall()
        return [RepositoryName(r[0]) for r in rows]

    def tag_expiration_window(self, namespace: str) -> int | None:
        """The namespace's time-machine window in seconds, if it set one."""
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT tag_expiration_s FROM namespace_settings WHERE name = ?", (namespace,)
            ).fetchone()
        return None if row is None else int(row[0])
