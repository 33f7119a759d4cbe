"""The audit log's kinds: which entry, of Quay's log kinds, every event becomes.

Every event of the registry log becomes one entry of ``audit_log`` (``AuditMapper`` here
decides which; ``writer.AuditWriter`` writes it in the projection pass, before the
event's own handler; ``entry`` holds the columns and the insert).

Pulls and logins are not events; they go to the ``access_log`` table through
``cargohold.projections.access_log`` (same columns, its own source of truth). The query
facade (``audit_queries``) merges both.

Every event class and the entry it becomes. Metadata always holds ``namespace`` (and, for
repository events, ``repo``: the short name) unless it names the user; "ours" marks a kind
Quay does not have:

=====================================  ============================  ===============================
event                                  kind                          metadata (and namespace, repo)
=====================================  ============================  ===============================
Repository.Created                     create_repo
Repository.Recreated                   create_repo                   recreated: true
Repository.Deleted                     delete_repo
Repository.BlobLinked                  link_blob (ours)              digest, size
Repository.BlobUnlinked                unlink_blob (ours)            digest
Repository.ManifestPushed              push_repo                     manifest_digest, media_type,
                                                                     size
Repository.ManifestDeleted             delete_manifest (ours)        manifest_digest
Repository.TagMoved (new tag)          create_tag                    tag, manifest_digest
Repository.TagMoved (moved)            move_tag                      ... + original_manifest_digest
Repository.TagDeleted                  delete_tag                    tag, manifest_digest
Repository.TagRestored                 revert_tag                    tag, manifest_digest,
                                                                     original_manifest_digest
Repository.TagExpirationChanged        change_tag_expiration         tag, manifest_digest,
                                                                     expiration, old_expiration
Repository.TagExpired                  tag_expired (ours)            tag, manifest_digest,
                                                                     expiration (system actor)
Repository.PermissionGranted           add_repo_permission           role, username+is_robot | team
  (a grant existed)                    change_repo_permission        ... + from_role
Repository.PermissionRevoked           delete_repo_permission        username+is_robot | team
Repository.VisibilityChanged           change_repo_visibility        visibility
Organization.Created                   org_create                    owner
Organization.MemberAdded               org_add_member (ours)         member
Organization.MemberRemoved             org_remove_member (ours)      member
Organization.TeamCreated               org_create_team               team, role, description
Organization.TeamRoleChanged           org_set_team_role             team, role, from_role
Organization.TeamDescriptionChanged    org_set_team_description      team, description
Organization.TeamDeleted               org_delete_team               team
Organization.TeamMemberAdded           org_add_team_member           team, member
Organization.TeamMemberRemoved         org_remove_team_member        team, member
Organization.RobotCreated              create_robot                  robot, description
Organization.RobotTokenRegenerated     regenerate_robot_token        robot
Organization.RobotDeleted              delete_robot                  robot
Organization.DefaultPermissionSet      create_prototype_permission   role, delegate {name, kind}
  (one for the delegate existed)       modify_prototype_permission   ... + from_role
Organization.DefaultPermissionRemoved  delete_prototype_permission   delegate {name, kind}
Account.Created                        user_create                   username, superuser
Account.PasswordChanged                user_change_password          username
Account.SuperuserGranted               user_change_superuser (ours)  username, superuser: true
Account.SuperuserRevoked               user_change_superuser (ours)  username, superuser: false
Account.ApiTokenIssued                 create_app_specific_token     username, token_id, title,
                                                                     scopes, expiration
Account.ApiTokenRevoked                revoke_app_specific_token     username, token_id
Account.TagExpirationWindowSet         user_change_tag_expiration    username, tag_expiration_s,
                                                                     from_tag_expiration_s
Organization.TagExpirationWindowSet    org_change_tag_expiration     tag_expiration_s,
                                                                     from_tag_expiration_s
NamespaceClaim.Created                 (no entry)                    see below
access_log: manifest GET               pull_repo                     tag (by tag), manifest_digest
access_log: login accepted             login_success                 type, username
access_log: login refused              login_failure                 type, username, reason
=====================================  ============================  ===============================

``NamespaceClaim.Created`` writes no entry, deliberately: the claim is the uniqueness
lock saved in the same ``save()`` as the ``Account.Created`` or ``Organization.Created``
it guards, so an entry would repeat ``user_create``/``org_create`` for every name.

Mirrors and repository states: ``mirror_kinds.py``. The columns every entry has are
``entry.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.identity import Principal, PrincipalKind
from cargohold.domain.ports import Cursor
from cargohold.domain.repository import Repository
from cargohold.projections.audit.entry import Entry, iso
from cargohold.projections.audit.mirror_kinds import MIRROR_KINDS, mirror_mappers
from cargohold.projections.base import ProjectionCorrupt, stream_name
from cargohold.projections.writes import BatchedWrites

#: The kinds of the pulls and logins recorded in ``access_log``.
PULL_REPO = "pull_repo"
LOGIN_SUCCESS = "login_success"
LOGIN_FAILURE = "login_failure"
ACCESS_KINDS: frozenset[str] = frozenset({PULL_REPO, LOGIN_SUCCESS, LOGIN_FAILURE})

Mapper = Callable[[Cursor, str, Any], Entry]


def _principal(p: Principal) -> dict[str, Any]:
    if p.kind is PrincipalKind.TEAM:
        return {"team": p.name.partition("/")[2]}
    return {"username": p.name, "is_robot": p.kind is PrincipalKind.ROBOT}


def _delegate(p: Principal) -> dict[str, Any]:
    if p.kind is PrincipalKind.TEAM:
        return {"name": p.name.partition("/")[2], "kind": "team"}
    return {"name": p.name, "kind": "user", "is_robot": p.kind is PrincipalKind.ROBOT}


class AuditMapper:
    """Maps every event class to its entry (see the module docstring); ``kinds`` lists
    every kind an event can map to."""

    def __init__(self) -> None:
        R, O, A = Repository, Organization, Account  # noqa: E741 - short aliases
        self._mappers: dict[type, Mapper | None] = {
            R.Created: self._repo("create_repo", lambda e: {}),
            R.Recreated: self._repo("create_repo", lambda e: {"recreated": True}),
            R.Deleted: self._repo("delete_repo", lambda e: {}),
            R.BlobLinked: self._repo(
                "link_blob", lambda e: {"digest": str(e.digest), "size": e.size}
            ),
            R.BlobUnlinked: self._repo("unlink_blob", lambda e: {"digest": str(e.digest)}),
            R.ManifestPushed: self._repo(
                "push_repo",
                lambda e: {
                    "manifest_digest": str(e.digest),
                    "media_type": str(e.media_type),
                    "size": e.size,
                },
            ),
            R.ManifestDeleted: self._repo(
                "delete_manifest", lambda e: {"manifest_digest": str(e.digest)}
            ),
            R.TagMoved: self._tag_moved,
            R.TagRestored: self._repo(
                "revert_tag",
                lambda e: {
                    "tag": str(e.tag),
                    "manifest_digest": str(e.to_digest),
                    "original_manifest_digest": _optional(e.from_digest),
                },
            ),
            R.TagExpirationChanged: self._repo(
                "change_tag_expiration",
                lambda e: {
                    "tag": str(e.tag),
                    "manifest_digest": str(e.digest),
                    "expiration": _optional_iso(e.expires_at),
                    "old_expiration": _optional_iso(e.from_expires_at),
                },
            ),
            R.TagExpired: self._repo(
                "tag_expired",
                lambda e: {
                    "tag": str(e.tag),
                    "manifest_digest": str(e.digest),
                    "expiration": iso(e.expires_at),
                },
            ),
            R.TagDeleted: self._repo(
                "delete_tag", lambda e: {"tag": str(e.tag), "manifest_digest": str(e.digest)}
            ),
            R.PermissionGranted: self._permission_granted,
            R.PermissionRevoked: self._repo(
                "delete_repo_permission", lambda e: _principal(e.principal)
            ),
            R.VisibilityChanged: self._repo(
                "change_repo_visibility", lambda e: {"visibility": e.visibility.value}
            ),
            O.Created: self._org_created,
            O.MemberAdded: self._org("org_add_member", lambda e: {"member": str(e.user)}),
            O.MemberRemoved: self._org("org_remove_member", lambda e: {"member": str(e.user)}),
            O.TeamCreated: self._org(
                "org_create_team",
                lambda e: {
                    "team": str(e.team),
                    "role": e.role.value,
                    "description": e.description,
                },
            ),
            O.TeamRoleChanged: self._org(
                "org_set_team_role",
                lambda e: {
                    "team": str(e.team),
                    "role": e.role.value,
                    "from_role": e.from_role.value,
                },
            ),
            O.TeamDescriptionChanged: self._org(
                "org_set_team_description",
                lambda e: {"team": str(e.team), "description": e.description},
            ),
            O.TeamDeleted: self._org("org_delete_team", lambda e: {"team": str(e.team)}),
            O.TeamMemberAdded: self._org(
                "org_add_team_member", lambda e: {"team": str(e.team), "member": str(e.user)}
            ),
            O.TeamMemberRemoved: self._org(
                "org_remove_team_member",
                lambda e: {"team": str(e.team), "member": str(e.user)},
            ),
            O.RobotCreated: self._org("create_robot", self._robot_created),
            O.RobotTokenRegenerated: self._org("regenerate_robot_token", self._robot),
            O.RobotDeleted: self._org("delete_robot", self._robot),
            O.DefaultPermissionSet: self._default_permission_set,
            O.DefaultPermissionRemoved: self._org(
                "delete_prototype_permission", lambda e: {"delegate": _delegate(e.principal)}
            ),
            A.Created: self._account_created,
            A.PasswordChanged: self._account("user_change_password", lambda e: {}),
            A.SuperuserGranted: self._account(
                "user_change_superuser", lambda e: {"superuser": True}
            ),
            A.SuperuserRevoked: self._account(
                "user_change_superuser", lambda e: {"superuser": False}
            ),
            A.ApiTokenIssued: self._account(
                "create_app_specific_token",
                lambda e: {
                    "token_id": e.token_id,
                    "title": e.description,
                    "scopes": sorted(s.value for s in e.scopes),
                    "expiration": iso(e.expires_at),
                },
            ),
            A.ApiTokenRevoked: self._account(
                "revoke_app_specific_token", lambda e: {"token_id": e.token_id}
            ),
            A.TagExpirationWindowSet: self._account(
                "user_change_tag_expiration",
                lambda e: {"tag_expiration_s": e.seconds, "from_tag_expiration_s": e.from_seconds},
            ),
            O.TagExpirationWindowSet: self._org(
                "org_change_tag_expiration",
                lambda e: {"tag_expiration_s": e.seconds, "from_tag_expiration_s": e.from_seconds},
            ),
            # NOTE: no entry: the claim is saved with user_create / org_create (docstring).
            NamespaceClaim.Created: None,
            **mirror_mappers(self._repo),
        }

    @property
    def event_classes(self) -> frozenset[type]:
        return frozenset(self._mappers)

    def maps(self, event_class: type) -> bool:
        """Whether ``event_class`` has a decided mapping (an entry, or deliberately none)."""
        return event_class in self._mappers

    def entry(self, c: Cursor, ns: str, event: Any) -> Entry | None:
        """The entry for ``event`` (``None``: deliberately none); raises ``KeyError`` for an
        event class without a mapping."""
        mapper = self._mappers[type(event)]
        return None if mapper is None else mapper(c, ns, event)

    # -- lookups -----------------------------------------------------------------------

    @staticmethod
    def repository_name(c: Cursor, ns: str, event: Any) -> str:
        """The name of the event's repository: live, or deleted (a ``Recreated``)."""
        return stream_name(c, ns, event)

    @staticmethod
    def _lookup(c: Cursor, ns: str, table: str, event: Any) -> str:
        # PERF: the names met in a batch are shared with the identity handlers.
        cache = c.names if isinstance(c, BatchedWrites) else {}
        key = (f"{ns}{table}", event.originator_id)
        cached = cache.get(key)
        if cached is not None:
            return cached
        row = c.execute(
            f"SELECT name FROM {ns}{table} WHERE id = ?", (str(event.originator_id),)
        ).fetchone()
        if row is None:
            raise ProjectionCorrupt(f"event for unknown {table} row {event.originator_id}")
        name = cache[key] = str(row[0])
        return name

    # -- builders ----------------------------------------------------------------------

    def _repo(self, kind: str, meta: Callable[[Any], dict[str, Any]]) -> Mapper:
        def build(c: Cursor, ns: str, e: Any) -> Entry:
            name = self.repository_name(c, ns, e)
            namespace, _, short = name.partition("/")
            return Entry(kind, namespace, name, {"namespace": namespace, "repo": short, **meta(e)})

        return build

    def _org(self, kind: str, meta: Callable[[Any], dict[str, Any]]) -> Mapper:
        def build(c: Cursor, ns: str, e: Any) -> Entry:
            org = self._lookup(c, ns, "organizations", e)
            return Entry(kind, org, None, {"namespace": org, **meta(e)})

        return build

    def _account(self, kind: str, meta: Callable[[Any], dict[str, Any]]) -> Mapper:
        def build(c: Cursor, ns: str, e: Any) -> Entry:
            user = self._lookup(c, ns, "accounts", e)
            return Entry(kind, user, None, {"username": user, **meta(e)})

        return build

    def _tag_moved(self, c: Cursor, ns: str, e: Any) -> Entry:
        meta: dict[str, Any] = {"tag": str(e.tag), "manifest_digest": str(e.to_digest)}
        if e.from_digest is None:
            return self._repo("create_tag", lambda _: meta)(c, ns, e)
        meta["original_manifest_digest"] = str(e.from_digest)
        return self._repo("move_tag", lambda _: meta)(c, ns, e)

    def _permission_granted(self, c: Cursor, ns: str, e: Any) -> Entry:
        meta = {"role": e.role.value, **_principal(e.principal)}
        if e.from_role is None:
            return self._repo("add_repo_permission", lambda _: meta)(c, ns, e)
        meta["from_role"] = e.from_role.value
        return self._repo("change_repo_permission", lambda _: meta)(c, ns, e)

    def _org_created(self, c: Cursor, ns: str, e: Any) -> Entry:
        org = str(e.name)
        return Entry("org_create", org, None, {"namespace": org, "owner": str(e.owner)})

    @staticmethod
    def _robot(e: Any) -> dict[str, Any]:
        return {"robot": str(e.short_name)}

    @staticmethod
    def _robot_created(e: Any) -> dict[str, Any]:
        return {"robot": str(e.short_name), "description": e.description}

    def _default_permission_set(self, c: Cursor, ns: str, e: Any) -> Entry:
        org = self._lookup(c, ns, "organizations", e)
        existing = c.execute(
            f"SELECT role FROM {ns}default_permissions WHERE org = ? AND principal_kind = ? "
            "AND principal_name = ?",
            (org, e.principal.kind.value, e.principal.name),
        ).fetchone()
        kind = "create_prototype_permission" if existing is None else "modify_prototype_permission"
        meta: dict[str, Any] = {
            "namespace": org,
            "role": e.role.value,
            "delegate": _delegate(e.principal),
        }
        if existing is not None:
            meta["from_role"] = str(existing[0])
        return Entry(kind, org, None, meta)

    def _account_created(self, c: Cursor, ns: str, e: Any) -> Entry:
        user = str(e.name)
        return Entry("user_create", user, None, {"username": user, "superuser": e.superuser})


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


#: Every kind an entry can have, from the log or from ``access_log``.
AUDIT_KINDS: frozenset[str] = (
    frozenset(
        {
            "create_repo",
            "delete_repo",
            "link_blob",
            "unlink_blob",
            "push_repo",
            "delete_manifest",
            "create_tag",
            "move_tag",
            "delete_tag",
            "revert_tag",
            "change_tag_expiration",
            "tag_expired",
            "user_change_tag_expiration",
            "org_change_tag_expiration",
            "add_repo_permission",
            "change_repo_permission",
            "delete_repo_permission",
            "change_repo_visibility",
            "org_create",
            "org_add_member",
            "org_remove_member",
            "org_create_team",
            "org_set_team_role",
            "org_set_team_description",
            "org_delete_team",
            "org_add_team_member",
            "org_remove_team_member",
            "create_robot",
            "regenerate_robot_token",
            "delete_robot",
            "create_prototype_permission",
            "modify_prototype_permission",
            "delete_prototype_permission",
            "user_create",
            "user_change_password",
            "user_change_superuser",
            "create_app_specific_token",
            "revoke_app_specific_token",
        }
    )
    | MIRROR_KINDS
)
ALL_KINDS: frozenset[str] = AUDIT_KINDS | ACCESS_KINDS
