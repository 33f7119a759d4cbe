"""The pull-through caches' projection and queries.

``proxy_caches`` has one row per organisation that was ever a cache (``Created``): its
settings while configured (``upstream_registry`` NULL once removed; never the password)
and its upstream's health. ``cached_tags`` holds, per cached tag, the digest its upstream
last confirmed and when (``Repository.TagRevalidated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cargohold.domain.ports import Database
from cargohold.domain.proxy_cache import ProxyCache, ProxyCacheSettings
from cargohold.domain.repository import Repository
from cargohold.domain.repository_rules import RepositoryStateDenied
from cargohold.domain.values import Actor, ActorKind, RepositoryName, Tag
from cargohold.projections.base import Handler, repository_name
from cargohold.projections.writes import update_stream_row, write


class ProxyCacheProjector:
    """Handlers with the signature of ``RegistryProjector``'s, keyed by event class."""

    def handlers(self) -> dict[type, Handler]:
        return {
            ProxyCache.Created: self._created,
            ProxyCache.Configured: self._configured,
            ProxyCache.Removed: lambda c, ns, e, pos: self._set(
                c,
                ns,
                e,
                pos,
                upstream_registry=None,
                username=None,
                expiration_s=None,
                insecure=None,
                failing=None,
                failing_since_ms=None,
                configured_ms=None,
            ),
            ProxyCache.UpstreamFailed: self._failed,
            ProxyCache.UpstreamRecovered: lambda c, ns, e, pos: self._set(
                c, ns, e, pos, failing=None, failing_since_ms=None
            ),
            Repository.TagRevalidated: self._revalidated,
        }

    @staticmethod
    def _created(c: Any, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "proxy_caches",
            f"INSERT INTO {ns}proxy_caches (org, id, position) VALUES (?, ?, ?)",
            (e.organization, str(e.originator_id), pos),
        )

    def _configured(self, c: Any, ns: str, e: Any, pos: int) -> None:
        self._set(
            c,
            ns,
            e,
            pos,
            upstream_registry=e.upstream_registry,
            username=e.username,
            expiration_s=e.expiration_s,
            insecure=int(e.insecure),
            failing=None,
            failing_since_ms=None,
            configured_ms=e.hlc.wall_ms,
        )

    def _failed(self, c: Any, ns: str, e: Any, pos: int) -> None:
        # NOTE: the start of an outage stays while its message changes.
        write(
            c,
            "proxy_caches",
            f"UPDATE {ns}proxy_caches SET failing = ?, "
            "failing_since_ms = COALESCE(failing_since_ms, ?), position = ? WHERE id = ?",
            (e.message, e.hlc.wall_ms, pos, str(e.originator_id)),
        )

    @staticmethod
    def _revalidated(c: Any, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "cached_tags",
            f"INSERT INTO {ns}cached_tags (repository, tag, digest, validated_ms, position) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (repository, tag) DO UPDATE SET "
            "digest = excluded.digest, validated_ms = excluded.validated_ms, "
            "position = excluded.position",
            (repository_name(c, ns, e), str(e.tag), str(e.digest), e.hlc.wall_ms, pos),
        )

    @staticmethod
    def _set(c: Any, ns: str, e: Any, pos: int, **fields: Any) -> None:
        update_stream_row(c, ns, "proxy_caches", e, pos, **fields)


@dataclass(frozen=True)
class CacheRow:
    """An organisation's cache as the views have it."""

    org: str
    upstream_registry: str
    username: str | None
    expiration_s: int
    insecure: bool
    failing: str | None
    failing_since_ms: int | None
    configured_ms: int

    @property
    def settings(self) -> ProxyCacheSettings:
        """The settings without the credentials (which only the log holds)."""
        return ProxyCacheSettings(
            self.upstream_registry, self.username, None, self.expiration_s, self.insecure
        )


_CACHE_COLUMNS = (
    "org, upstream_registry, username, expiration_s, insecure, failing, failing_since_ms, "
    "configured_ms"
)


class ProxyCacheQueries:
    """Reads of the caches' views."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def cache(self, org: str) -> CacheRow | None:
        """The organisation's cache, or None when it is not one."""
        rows = self.db.query(
            f"SELECT {_CACHE_COLUMNS} FROM proxy_caches "
            "WHERE org = ? AND upstream_registry IS NOT NULL",
            (org,),
        )
        if not rows:
            return None
        r = rows[0]
        return CacheRow(
            str(r[0]),
            str(r[1]),
            None if r[2] is None else str(r[2]),
            int(r[3]),
            bool(r[4]),
            None if r[5] is None else str(r[5]),
            None if r[6] is None else int(r[6]),
            int(r[7]),
        )

    def validated_ms(self, repository: RepositoryName, tag: Tag) -> int | None:
        """When the upstream last confirmed what ``tag`` points at now (None: never, or
        the tag has moved or gone since)."""
        rows = self.db.query(
            "SELECT c.validated_ms FROM cached_tags c JOIN tags t "
            "ON t.repository = c.repository AND t.tag = c.tag AND t.digest = c.digest "
            "WHERE c.repository = ? AND c.tag = ?",
            (str(repository), str(tag)),
        )
        return int(rows[0][0]) if rows else None

    def guard(self, name: RepositoryName, actor: Actor) -> None:
        """``RegistryService``'s content guard: in a cache's organisation only the cache
        itself (and the system's sweeps) writes content; clients pull."""
        if actor.kind in (ActorKind.MIRROR, ActorKind.SYSTEM):
            return
        cache = self.cache(name.namespace)
        if cache is not None:
            raise RepositoryStateDenied(
                f"organization {name.namespace} is a pull-through cache of "
                f"{cache.upstream_registry}: its repositories are filled from there, "
                "not pushed to"
            )
