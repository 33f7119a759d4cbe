"""The audit log's kinds for mirrors, pull-through caches and repository states (merged
into ``AuditMapper``).

================================  ==================================  ======================
event                             kind                                metadata
================================  ==================================  ======================
Repository.StateChanged           change_repo_state                   state
Mirror.Created (enabled)       repo_mirror_enabled                 external_reference,
  (configured disabled)           repo_mirror_disabled                robot, tag_globs,
                                                                      sync_interval
Mirror.Changed                    repo_mirror_config_changed          changed (Quay's names)
Mirror.Enabled / Disabled         repo_mirror_enabled / _disabled
Mirror.SyncRequested              repo_mirror_sync_now_requested
Mirror.SyncStarted                repo_mirror_sync_started            reclaimed
Mirror.SyncPlanned                repo_mirror_sync_planned (ours)     tags_total
Mirror.TagSynced                  repo_mirror_sync_tag_success        tag, manifest_digest,
                                                                      bytes
Mirror.TagFailed                  repo_mirror_sync_tag_failed         tag, message
Mirror.TagRemoved                 repo_mirror_sync_tag_removed (ours) tag
Mirror.SyncFinished (SUCCESS)     repo_mirror_sync_success            synced, failed,
  (a tag failed)                  repo_mirror_sync_failed             removed, bytes,
                                                                      duration_ms
Mirror.SyncFailed                 repo_mirror_sync_failed             message
Mirror.Cancelled                  repo_mirror_sync_cancelled (ours)
Mirror.Deleted                    repo_mirror_deleted (ours)
Mirror.Reconfigured               as Mirror.Created                   as Mirror.Created
ProxyCache.Configured             create_proxy_cache_config           upstream_registry,
                                                                      expiration_s, insecure
ProxyCache.Removed                delete_proxy_cache_config
ProxyCache.UpstreamFailed         proxy_cache_upstream_failed (ours)  message
ProxyCache.UpstreamRecovered      proxy_cache_upstream_recovered      (ours)
Repository.TagRevalidated         revalidate_tag (ours)               tag, manifest_digest
ProxyCache.Created                (none: saved with its first Configured)
================================  ==================================  ======================

Metadata also holds ``namespace`` and ``repo`` (the short name; a cache's entries are
the organisation's, with ``namespace`` only). No entry holds a
credential: ``Changed`` names the fields that changed, never their values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cargohold.domain.mirror import Mirror, SyncStatus
from cargohold.domain.ports import Cursor
from cargohold.domain.proxy_cache import ProxyCache
from cargohold.domain.repository import Repository
from cargohold.projections.audit.entry import Entry
from cargohold.projections.base import ProjectionCorrupt

Mapper = Callable[[Cursor, str, Any], Entry]
RepoMapper = Callable[[str, Callable[[Any], dict[str, Any]]], Mapper]

#: Our field names -> Quay's, for ``repo_mirror_config_changed``.
QUAY_FIELDS = {
    "external_reference": "external_reference",
    "sync_interval_s": "sync_interval",
    "robot": "robot_username",
    "tag_globs": "root_rule",
    "username": "external_registry_username",
    "credentials": "external_registry_password",
    "verify_tls": "verify_tls",
    "unsigned_images": "unsigned_images",
    "proxy": "proxy",
    "timeout_s": "skopeo_timeout_interval",
    "architectures": "architecture_filter",
    "next_sync_ms": "sync_start_date",
}

MIRROR_KINDS: frozenset[str] = frozenset(
    {
        "change_repo_state",
        "repo_mirror_enabled",
        "repo_mirror_disabled",
        "repo_mirror_config_changed",
        "repo_mirror_sync_now_requested",
        "repo_mirror_sync_started",
        "repo_mirror_sync_planned",
        "repo_mirror_sync_tag_success",
        "repo_mirror_sync_tag_failed",
        "repo_mirror_sync_tag_removed",
        "repo_mirror_sync_success",
        "repo_mirror_sync_failed",
        "repo_mirror_sync_cancelled",
        "repo_mirror_deleted",
        "create_proxy_cache_config",
        "delete_proxy_cache_config",
        "proxy_cache_upstream_failed",
        "proxy_cache_upstream_recovered",
        "revalidate_tag",
    }
)


def mirror_mappers(repo: RepoMapper) -> dict[type, Mapper | None]:
    """The mappers, given ``AuditMapper._repo`` (for events of a repository's stream)."""
    M = Mirror
    return {
        Repository.StateChanged: repo("change_repo_state", lambda e: {"state": e.state}),
        M.Created: _configured,
        M.Changed: _mirror(
            "repo_mirror_config_changed",
            lambda e: {"changed": sorted(QUAY_FIELDS.get(n, n) for n in e.changed)},
        ),
        M.Enabled: _mirror("repo_mirror_enabled", lambda e: {}),
        M.Disabled: _mirror("repo_mirror_disabled", lambda e: {}),
        M.SyncRequested: _mirror("repo_mirror_sync_now_requested", lambda e: {}),
        M.SyncStarted: _mirror("repo_mirror_sync_started", lambda e: {"reclaimed": e.reclaimed}),
        M.SyncPlanned: _mirror("repo_mirror_sync_planned", lambda e: {"tags_total": e.tags_total}),
        M.TagSynced: _mirror(
            "repo_mirror_sync_tag_success",
            lambda e: {"tag": e.tag, "manifest_digest": e.digest, "bytes": e.bytes},
        ),
        M.TagFailed: _mirror(
            "repo_mirror_sync_tag_failed", lambda e: {"tag": e.tag, "message": e.message}
        ),
        M.TagRemoved: _mirror("repo_mirror_sync_tag_removed", lambda e: {"tag": e.tag}),
        M.SyncFinished: _finished,
        M.SyncFailed: _mirror("repo_mirror_sync_failed", lambda e: {"message": e.message}),
        M.Cancelled: _mirror("repo_mirror_sync_cancelled", lambda e: {}),
        # NOTE: these two carry their repository: the row is gone (or not yet back).
        M.Deleted: lambda c, ns, e: _entry("repo_mirror_deleted", str(e.repository), {}),
        M.Reconfigured: _configured,
        ProxyCache.Created: None,  # NOTE: saved with its first Configured, which says it
        ProxyCache.Configured: _cache(
            "create_proxy_cache_config",
            lambda e: {
                "upstream_registry": e.upstream_registry,
                "expiration_s": e.expiration_s,
                "insecure": e.insecure,
            },
        ),
        ProxyCache.Removed: _cache("delete_proxy_cache_config", lambda e: {}),
        ProxyCache.UpstreamFailed: _cache(
            "proxy_cache_upstream_failed", lambda e: {"message": e.message}
        ),
        ProxyCache.UpstreamRecovered: _cache("proxy_cache_upstream_recovered", lambda e: {}),
        Repository.TagRevalidated: repo(
            "revalidate_tag", lambda e: {"tag": str(e.tag), "manifest_digest": str(e.digest)}
        ),
    }


def _entry(kind: str, repository: str, meta: dict[str, Any]) -> Entry:
    namespace, _, short = repository.partition("/")
    return Entry(kind, namespace, repository, {"namespace": namespace, "repo": short, **meta})


def _name_of(c: Cursor, ns: str, e: Any, table: str, column: str, what: str) -> str:
    """``column`` of the ``table`` row of ``e``'s stream (its repository or organisation);
    ``ProjectionCorrupt`` when there is none."""
    row = c.execute(
        f"SELECT {column} FROM {ns}{table} WHERE id = ?", (str(e.originator_id),)
    ).fetchone()
    if row is None:
        raise ProjectionCorrupt(f"event for unknown {what} {e.originator_id}")
    return str(row[0])


def _mirror(kind: str, meta: Callable[[Any], dict[str, Any]]) -> Mapper:
    def build(c: Cursor, ns: str, e: Any) -> Entry:
        return _entry(kind, _name_of(c, ns, e, "mirrors", "repository", "mirror"), meta(e))

    return build


def _cache(kind: str, meta: Callable[[Any], dict[str, Any]]) -> Mapper:
    def build(c: Cursor, ns: str, e: Any) -> Entry:
        org = _name_of(c, ns, e, "proxy_caches", "org", "proxy cache")
        return Entry(kind, org, None, {"namespace": org, **meta(e)})

    return build


def _configured(c: Cursor, ns: str, e: Any) -> Entry:
    kind = "repo_mirror_enabled" if e.enabled else "repo_mirror_disabled"
    return _entry(
        kind,
        str(e.repository),
        {
            "external_reference": e.external_reference,
            "robot": e.robot,
            "tag_globs": list(e.tag_globs),
            "sync_interval": e.sync_interval_s,
        },
    )


def _finished(c: Cursor, ns: str, e: Any) -> Entry:
    ok = e.status == SyncStatus.SUCCESS.name
    return _entry(
        "repo_mirror_sync_success" if ok else "repo_mirror_sync_failed",
        _name_of(c, ns, e, "mirrors", "repository", "mirror"),
        {
            "synced": e.synced,
            "failed": e.failed,
            "removed": e.removed,
            "bytes": e.bytes,
            "duration_ms": e.duration_ms,
        },
    )
