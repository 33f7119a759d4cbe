"""The identity projection: folds ``Account``, ``Organization`` and ``NamespaceClaim``
events into the identity views of ``schema`` (accounts, namespaces, organizations,
org_members, teams, team_members, robots, default_permissions, api_tokens).

``RegistryProjector`` merges ``IdentityProjector.handlers()`` into its own map: identity
events share the registry's log, so one projection (one tracking row) folds them all.

Strict by design: an event about an account or organisation the views do not have, or
one that changes or removes a row that is not there, raises ``ProjectionCorrupt``. The
aggregates' guards make every such event impossible, so meeting one means the views and
the log disagree, and the projection stops rather than guess.

Secrets: a ``PasswordChanged`` writes nothing (password hashes never enter a view).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.identity import OWNERS_TEAM, TeamRole
from cargohold.domain.ports import Cursor
from cargohold.projections.base import Handler, ProjectionCorrupt, event_time, record_origin
from cargohold.projections.writes import BatchedWrites, write


def _name_of(c: Cursor, table: str, e: Any, what: str) -> str:
    """The ``name`` of the row of ``table`` whose id is the event's originator."""
    key = (table, e.originator_id)
    names = c.names if isinstance(c, BatchedWrites) else {}
    name = names.get(key)
    if name is None:
        row = c.execute(
            f"SELECT name FROM {table} WHERE id = ?", (str(e.originator_id),)
        ).fetchone()
        if row is None:
            raise ProjectionCorrupt(f"event for unknown {what} {e.originator_id}")
        name = names[key] = str(row[0])
    return name


def _remember(c: Cursor, table: str, e: Any, name: str) -> None:
    if isinstance(c, BatchedWrites):
        c.names[(table, e.originator_id)] = name


def _changed_one(c: Cursor, what: str, e: Any) -> None:
    if c.rowcount != 1:
        raise ProjectionCorrupt(
            f"{type(e).__qualname__} of {e.originator_id}: no {what} row to change"
        )


def _scopes(event: Any) -> str:
    return " ".join(sorted(scope.value for scope in event.scopes))


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class IdentityProjector:
    """Handlers for every event class of ``Account``, ``Organization`` and
    ``NamespaceClaim``, with the signature of ``RegistryProjector``'s."""

    def handlers(self) -> dict[type, Handler]:
        return {
            Account.Created: self._account_created,
            Account.PasswordChanged: self._password_changed,
            Account.SuperuserGranted: self._superuser_granted,
            Account.SuperuserRevoked: self._superuser_revoked,
            Account.ApiTokenIssued: self._api_token_issued,
            Account.ApiTokenRevoked: self._api_token_revoked,
            Organization.Created: self._organization_created,
            Organization.MemberAdded: self._member_added,
            Organization.MemberRemoved: self._member_removed,
            Organization.TeamCreated: self._team_created,
            Organization.TeamRoleChanged: self._team_role_changed,
            Organization.TeamDescriptionChanged: self._team_description_changed,
            Organization.TeamDeleted: self._team_deleted,
            Organization.TeamMemberAdded: self._team_member_added,
            Organization.TeamMemberRemoved: self._team_member_removed,
            Organization.RobotCreated: self._robot_created,
            Organization.RobotTokenRegenerated: self._robot_token_regenerated,
            Organization.RobotDeleted: self._robot_deleted,
            Organization.DefaultPermissionSet: self._default_permission_set,
            Organization.DefaultPermissionRemoved: self._default_permission_removed,
            NamespaceClaim.Created: self._namespace_claimed,
        }

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _account_name(c: Cursor, ns: str, e: Any) -> str:
        return _name_of(c, f"{ns}accounts", e, "account")

    @staticmethod
    def _org_name(c: Cursor, ns: str, e: Any) -> str:
        return _name_of(c, f"{ns}organizations", e, "organization")

    # -- accounts ----------------------------------------------------------------------

    def _account_created(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "accounts",
            f"INSERT INTO {ns}accounts (name, id, email, superuser, created_at, position) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (str(e.name), str(e.originator_id), e.email, int(e.superuser), event_time(e), pos),
        )
        _remember(c, f"{ns}accounts", e, str(e.name))
        record_origin(c, ns, "account", e, pos)

    def _password_changed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        # NOTE: nothing to write (hashes stay out of views); still stop on a stranger.
        self._account_name(c, ns, e)

    def _set_superuser(self, c: Cursor, ns: str, e: Any, pos: int, flag: bool) -> None:
        c.execute(
            f"UPDATE {ns}accounts SET superuser = ?, position = ? WHERE id = ?",
            (int(flag), pos, str(e.originator_id)),
        )
        _changed_one(c, "account", e)

    def _superuser_granted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        self._set_superuser(c, ns, e, pos, True)

    def _superuser_revoked(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        self._set_superuser(c, ns, e, pos, False)

    def _api_token_issued(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        owner = self._account_name(c, ns, e)
        write(
            c,
            "api_tokens",
            f"INSERT INTO {ns}api_tokens (token_id, owner, token_hash, scopes, expires_at, "
            "description, created_at, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e.token_id,
                owner,
                e.token_hash,
                _scopes(e),
                _utc_iso(e.expires_at),
                e.description,
                event_time(e),
                pos,
            ),
        )

    def _api_token_revoked(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        owner = self._account_name(c, ns, e)
        c.execute(
            f"DELETE FROM {ns}api_tokens WHERE token_id = ? AND owner = ?", (e.token_id, owner)
        )
        _changed_one(c, "API token", e)

    # -- namespaces --------------------------------------------------------------------

    def _namespace_claimed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "namespaces",
            f"INSERT INTO {ns}namespaces (name, kind, position) VALUES (?, ?, ?)",
            (str(e.name), e.kind.value, pos),
        )
        record_origin(c, ns, "namespace", e, pos)

    # -- organisations -----------------------------------------------------------------

    def _organization_created(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        # NOTE: ``Organization.__init__`` makes the owners team (ADMIN) holding the owner,
        # who is also a member, without further events: write those rows here.
        org, owner = str(e.name), str(e.owner)
        write(
            c,
            "organizations",
            f"INSERT INTO {ns}organizations (name, id, created_at, position) VALUES (?, ?, ?, ?)",
            (org, str(e.originator_id), event_time(e), pos),
        )
        _remember(c, f"{ns}organizations", e, org)
        record_origin(c, ns, "organization", e, pos)
        write(
            c,
            "org_members",
            f"INSERT INTO {ns}org_members (org, username, position) VALUES (?, ?, ?)",
            (org, owner, pos),
        )
        write(
            c,
            "teams",
            f"INSERT INTO {ns}teams (org, team, role, description, position) "
            "VALUES (?, ?, ?, ?, ?)",
            (org, OWNERS_TEAM, TeamRole.ADMIN.value, "", pos),
        )
        write(
            c,
            "team_members",
            f"INSERT INTO {ns}team_members (org, team, username, position) VALUES (?, ?, ?, ?)",
            (org, OWNERS_TEAM, owner, pos),
        )

    def _member_added(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "org_members",
            f"INSERT INTO {ns}org_members (org, username, position) VALUES (?, ?, ?)",
            (self._org_name(c, ns, e), str(e.user), pos),
        )

    def _member_removed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        # The aggregate removes the user from every team first, with events of its own.
        c.execute(
            f"DELETE FROM {ns}org_members WHERE org = ? AND username = ?",
            (self._org_name(c, ns, e), str(e.user)),
        )
        _changed_one(c, "org member", e)

    def _team_created(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "teams",
            f"INSERT INTO {ns}teams (org, team, role, description, position) "
            "VALUES (?, ?, ?, ?, ?)",
            (self._org_name(c, ns, e), str(e.team), e.role.value, e.description, pos),
        )

    def _team_description_changed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        c.execute(
            f"UPDATE {ns}teams SET description = ?, position = ? WHERE org = ? AND team = ?",
            (e.description, pos, self._org_name(c, ns, e), str(e.team)),
        )
        _changed_one(c, "team", e)

    def _team_role_changed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        c.execute(
            f"UPDATE {ns}teams SET role = ?, position = ? WHERE org = ? AND team = ?",
            (e.role.value, pos, self._org_name(c, ns, e), str(e.team)),
        )
        _changed_one(c, "team", e)

    def _team_deleted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        org, team = self._org_name(c, ns, e), str(e.team)
        c.execute(f"DELETE FROM {ns}teams WHERE org = ? AND team = ?", (org, team))
        _changed_one(c, "team", e)
        c.execute(f"DELETE FROM {ns}team_members WHERE org = ? AND team = ?", (org, team))

    def _team_member_added(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "team_members",
            f"INSERT INTO {ns}team_members (org, team, username, position) VALUES (?, ?, ?, ?)",
            (self._org_name(c, ns, e), str(e.team), str(e.user), pos),
        )

    def _team_member_removed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        c.execute(
            f"DELETE FROM {ns}team_members WHERE org = ? AND team = ? AND username = ?",
            (self._org_name(c, ns, e), str(e.team), str(e.user)),
        )
        _changed_one(c, "team member", e)

    def _robot_created(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "robots",
            f"INSERT INTO {ns}robots (namespace, short_name, token_hash, description, "
            "created_at, position) VALUES (?, ?, ?, ?, ?, ?)",
            (
                self._org_name(c, ns, e),
                str(e.short_name),
                e.token_hash,
                e.description,
                event_time(e),
                pos,
            ),
        )

    def _robot_token_regenerated(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        c.execute(
            f"UPDATE {ns}robots SET token_hash = ?, position = ? "
            "WHERE namespace = ? AND short_name = ?",
            (e.token_hash, pos, self._org_name(c, ns, e), str(e.short_name)),
        )
        _changed_one(c, "robot", e)

    def _robot_deleted(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        c.execute(
            f"DELETE FROM {ns}robots WHERE namespace = ? AND short_name = ?",
            (self._org_name(c, ns, e), str(e.short_name)),
        )
        _changed_one(c, "robot", e)

    def _default_permission_set(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        write(
            c,
            "default_permissions",
            f"INSERT INTO {ns}default_permissions (org, principal_kind, principal_name, role, "
            "position) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (org, principal_kind, principal_name) DO UPDATE SET "
            "role = excluded.role, position = excluded.position",
            (
                self._org_name(c, ns, e),
                e.principal.kind.value,
                e.principal.name,
                e.role.value,
                pos,
            ),
        )

    def _default_permission_removed(self, c: Cursor, ns: str, e: Any, pos: int) -> None:
        c.execute(
            f"DELETE FROM {ns}default_permissions WHERE org = ? AND principal_kind = ? "
            "AND principal_name = ?",
            (self._org_name(c, ns, e), e.principal.kind.value, e.principal.name),
        )
        _changed_one(c, "default permission", e)
