"""Stored topics are a persisted schema: moving a class between modules keeps them.

The list below is every topic the log held on 70e6a6e, before ``domain/accounts.py`` was
split into a package (``domain/topics.py``). A new event class adds its topic here; a
topic never leaves it. (Since: the repository's StateChanged and the Mirror aggregate.)
"""

from __future__ import annotations

from eventsourcing.utils import get_topic, resolve_topic

from tests.strategies import AGGREGATES, all_event_classes

STORED_TOPICS = frozenset(
    {
        "cargohold.domain.accounts:Account",
        "cargohold.domain.accounts:Account.ApiTokenIssued",
        "cargohold.domain.accounts:Account.ApiTokenRevoked",
        "cargohold.domain.accounts:Account.Created",
        "cargohold.domain.accounts:Account.PasswordChanged",
        "cargohold.domain.accounts:Account.SuperuserGranted",
        "cargohold.domain.accounts:Account.SuperuserRevoked",
        "cargohold.domain.accounts:Account.TagExpirationWindowSet",
        "cargohold.domain.accounts:NamespaceClaim",
        "cargohold.domain.accounts:NamespaceClaim.Created",
        "cargohold.domain.accounts:Organization",
        "cargohold.domain.accounts:Organization.Created",
        "cargohold.domain.accounts:Organization.DefaultPermissionRemoved",
        "cargohold.domain.accounts:Organization.DefaultPermissionSet",
        "cargohold.domain.accounts:Organization.MemberAdded",
        "cargohold.domain.accounts:Organization.MemberRemoved",
        "cargohold.domain.accounts:Organization.RobotCreated",
        "cargohold.domain.accounts:Organization.RobotDeleted",
        "cargohold.domain.accounts:Organization.RobotTokenRegenerated",
        "cargohold.domain.accounts:Organization.TagExpirationWindowSet",
        "cargohold.domain.accounts:Organization.TeamCreated",
        "cargohold.domain.accounts:Organization.TeamDeleted",
        "cargohold.domain.accounts:Organization.TeamDescriptionChanged",
        "cargohold.domain.accounts:Organization.TeamMemberAdded",
        "cargohold.domain.accounts:Organization.TeamMemberRemoved",
        "cargohold.domain.accounts:Organization.TeamRoleChanged",
        "cargohold.domain.repository:Repository",
        "cargohold.domain.repository:Repository.BlobLinked",
        "cargohold.domain.repository:Repository.BlobUnlinked",
        "cargohold.domain.repository:Repository.Created",
        "cargohold.domain.repository:Repository.Deleted",
        "cargohold.domain.repository:Repository.ManifestDeleted",
        "cargohold.domain.repository:Repository.ManifestPushed",
        "cargohold.domain.repository:Repository.PermissionGranted",
        "cargohold.domain.repository:Repository.PermissionRevoked",
        "cargohold.domain.repository:Repository.Recreated",
        "cargohold.domain.repository:Repository.TagDeleted",
        "cargohold.domain.repository:Repository.TagExpirationChanged",
        "cargohold.domain.repository:Repository.TagExpired",
        "cargohold.domain.repository:Repository.TagMoved",
        "cargohold.domain.repository:Repository.TagRestored",
        "cargohold.domain.repository:Repository.VisibilityChanged",
        "cargohold.domain.repository:Repository.StateChanged",
        "cargohold.domain.mirror:Mirror",
        "cargohold.domain.mirror:Mirror.Cancelled",
        "cargohold.domain.mirror:Mirror.Changed",
        "cargohold.domain.mirror:Mirror.Created",
        "cargohold.domain.mirror:Mirror.Disabled",
        "cargohold.domain.mirror:Mirror.Enabled",
        "cargohold.domain.mirror:Mirror.SyncFailed",
        "cargohold.domain.mirror:Mirror.SyncFinished",
        "cargohold.domain.mirror:Mirror.SyncPlanned",
        "cargohold.domain.mirror:Mirror.SyncRequested",
        "cargohold.domain.mirror:Mirror.SyncStarted",
        "cargohold.domain.mirror:Mirror.TagFailed",
        "cargohold.domain.mirror:Mirror.TagRemoved",
        "cargohold.domain.mirror:Mirror.TagSynced",
        "cargohold.domain.mirror:Mirror.Deleted",
        "cargohold.domain.mirror:Mirror.Reconfigured",
        "cargohold.domain.repository:Repository.TagRevalidated",
        "cargohold.domain.proxy_cache:ProxyCache",
        "cargohold.domain.proxy_cache:ProxyCache.Created",
        "cargohold.domain.proxy_cache:ProxyCache.Configured",
        "cargohold.domain.proxy_cache:ProxyCache.Removed",
        "cargohold.domain.proxy_cache:ProxyCache.UpstreamFailed",
        "cargohold.domain.proxy_cache:ProxyCache.UpstreamRecovered",
    }
)


def _topics() -> set[str]:
    return {get_topic(c) for c in (*AGGREGATES, *all_event_classes())}


def test_every_class_is_stored_under_its_pinned_topic() -> None:
    assert _topics() == STORED_TOPICS


def test_every_stored_topic_resolves_to_its_class() -> None:
    for cls in (*AGGREGATES, *all_event_classes()):
        assert resolve_topic(get_topic(cls)) is cls
