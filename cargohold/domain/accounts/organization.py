"""The ``Organization`` aggregate: members, teams, robots, default permissions (see the
package docstring for the shared rules)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.accounts.rules import check_hash, window_change
from cargohold.domain.context import ContextEvent, EventContext
from cargohold.domain.errors import (
    DefaultPermissionUnknown,
    MemberUnknown,
    OwnersTeamProtected,
    PermissionInvalid,
    RobotExists,
    RobotUnknown,
    TeamExists,
    TeamUnknown,
)
from cargohold.domain.identity import (
    OWNERS_TEAM,
    AccountName,
    Principal,
    PrincipalKind,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
)
from cargohold.domain.topics import stored_as


@stored_as("cargohold.domain.accounts")
class Organization(Aggregate):
    """An organisation with its members, teams, robots and default permissions.

    State (plain transcodable containers, so snapshots need no new types):
    ``name``; ``members`` (users); ``team_roles``, ``team_descriptions`` and
    ``team_members`` keyed by team; ``robots`` (short name -> token hash) and
    ``robot_descriptions``; ``default_permissions`` (principal -> role) applied to every
    new repository of the organisation.

    Invariants: the ``owners`` team exists from creation with role ADMIN and the creator
    in it; it cannot be deleted, change role, or lose its last member (Quay refuses to
    leave an organisation without an admin). Every team member is an organisation member.
    Team members are users; robots get only their explicit grants (see authorization.py).

    ``tag_expiration_s``: the time-machine window (``None``: the installation's default).
    """

    # NOTE: v2 added ``tag_expiration_s``; see ``upcast_v1_v2``.
    class_version = 2

    class Event(ContextEvent):
        """Base of this aggregate's events (the command's provenance)."""

    class Created(Event, Aggregate.Created):
        name: AccountName
        owner: AccountName

    class MemberAdded(Event):
        user: AccountName

        def apply(self, aggregate: Organization) -> None:
            aggregate.members.add(self.user)

    class MemberRemoved(Event):
        user: AccountName

        def apply(self, aggregate: Organization) -> None:
            aggregate.members.discard(self.user)

    class TeamCreated(Event):
        team: TeamName
        role: TeamRole
        description: str

        def apply(self, aggregate: Organization) -> None:
            aggregate.team_roles[self.team] = self.role
            aggregate.team_descriptions[self.team] = self.description
            aggregate.team_members[self.team] = set()

    class TeamRoleChanged(Event):
        team: TeamName
        role: TeamRole
        from_role: TeamRole

        def apply(self, aggregate: Organization) -> None:
            aggregate.team_roles[self.team] = self.role

    class TeamDescriptionChanged(Event):
        team: TeamName
        description: str

        def apply(self, aggregate: Organization) -> None:
            aggregate.team_descriptions[self.team] = self.description

    class TeamDeleted(Event):
        team: TeamName

        def apply(self, aggregate: Organization) -> None:
            del aggregate.team_roles[self.team]
            del aggregate.team_descriptions[self.team]
            del aggregate.team_members[self.team]

    class TeamMemberAdded(Event):
        team: TeamName
        user: AccountName

        def apply(self, aggregate: Organization) -> None:
            aggregate.team_members[self.team].add(self.user)

    class TeamMemberRemoved(Event):
        team: TeamName
        user: AccountName

        def apply(self, aggregate: Organization) -> None:
            aggregate.team_members[self.team].discard(self.user)

    class RobotCreated(Event):
        short_name: RobotShortName
        token_hash: str
        description: str

        def apply(self, aggregate: Organization) -> None:
            aggregate.robots[self.short_name] = self.token_hash
            aggregate.robot_descriptions[self.short_name] = self.description

    class RobotTokenRegenerated(Event):
        short_name: RobotShortName
        token_hash: str

        def apply(self, aggregate: Organization) -> None:
            aggregate.robots[self.short_name] = self.token_hash

    class RobotDeleted(Event):
        short_name: RobotShortName

        def apply(self, aggregate: Organization) -> None:
            del aggregate.robots[self.short_name]
            del aggregate.robot_descriptions[self.short_name]

    class DefaultPermissionSet(Event):
        principal: Principal
        role: RepositoryRole

        def apply(self, aggregate: Organization) -> None:
            aggregate.default_permissions[self.principal] = self.role

    class DefaultPermissionRemoved(Event):
        principal: Principal

        def apply(self, aggregate: Organization) -> None:
            del aggregate.default_permissions[self.principal]

    class TagExpirationWindowSet(Event):
        """The organisation's time-machine window; see ``Account.TagExpirationWindowSet``."""

        seconds: int
        from_seconds: int | None

        def apply(self, aggregate: Organization) -> None:
            aggregate.tag_expiration_s = self.seconds

    def __init__(self, name: AccountName, owner: AccountName) -> None:
        owners = TeamName(OWNERS_TEAM)
        self.name = name
        self.members: set[AccountName] = {owner}
        self.team_roles: dict[TeamName, TeamRole] = {owners: TeamRole.ADMIN}
        self.team_descriptions: dict[TeamName, str] = {owners: ""}
        self.team_members: dict[TeamName, set[AccountName]] = {owners: {owner}}
        self.robots: dict[RobotShortName, str] = {}
        self.robot_descriptions: dict[RobotShortName, str] = {}
        self.default_permissions: dict[Principal, RepositoryRole] = {}
        self.tag_expiration_s: int | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot from before the time-machine window: the installation's default."""
        state["tag_expiration_s"] = None

    @staticmethod
    def create_id(site_id: UUID, name: AccountName) -> UUID:
        """``uuid5(site_id, "organization:<name>")``. NOTE: persisted; never change it."""
        return uuid5(site_id, f"organization:{name}")

    @classmethod
    def create(cls, name: AccountName, owner: AccountName, ctx: EventContext) -> Organization:
        """A new organisation whose ``owners`` team (ADMIN) holds ``owner``.

        The command layer checks that ``owner`` is an existing account and claims the
        name (see the module docstring).
        """
        return cls._create(
            cls.Created,
            id=cls.create_id(ctx.site_id, name),
            name=name,
            owner=owner,
            **ctx.event_fields(),
        )

    # Queries over state (pure; the read side uses views, not these)

    def team_principal(self, team: TeamName) -> Principal:
        return Principal(PrincipalKind.TEAM, f"{self.name}/{team}")

    def robot_principal(self, short_name: RobotShortName) -> Principal:
        return Principal(PrincipalKind.ROBOT, f"{self.name}+{short_name}")

    def teams_of(self, user: AccountName) -> list[TeamName]:
        return sorted(t for t, members in self.team_members.items() if user in members)

    def is_admin(self, user: AccountName) -> bool:
        return any(self.team_roles[t] is TeamRole.ADMIN for t in self.teams_of(user))

    # Members

    def add_member(self, user: AccountName, ctx: EventContext) -> None:
        """Make ``user`` (an existing account: the command layer checks) a member. Idempotent."""
        if user not in self.members:
            self._trigger(self.MemberAdded, ctx, user=user)

    def remove_member(self, user: AccountName, ctx: EventContext) -> None:
        """Remove ``user`` from every team (in team order), its default permission, then
        the organisation, as Quay's member DELETE does.

        Raises ``MemberUnknown`` for a non-member and ``OwnersTeamProtected`` if the user
        is the last member of ``owners``. The user's grants on the organisation's
        repositories live on those aggregates: the command layer revokes them.
        """
        if user not in self.members:
            raise MemberUnknown(f"{user} is not a member of organization {self.name}")
        teams = self.teams_of(user)
        if TeamName(OWNERS_TEAM) in teams:
            self._check_not_last_owner(user)
        for team in teams:
            self._trigger(self.TeamMemberRemoved, ctx, team=team, user=user)
        principal = Principal(PrincipalKind.USER, str(user))
        if principal in self.default_permissions:
            self._trigger(self.DefaultPermissionRemoved, ctx, principal=principal)
        self._trigger(self.MemberRemoved, ctx, user=user)

    # Teams

    def create_team(
        self, team: TeamName, role: TeamRole, ctx: EventContext, description: str = ""
    ) -> None:
        """A new, empty team. Raises ``TeamExists`` if the organisation has it."""
        if team in self.team_roles:
            raise TeamExists(f"team {team} already exists in organization {self.name}")
        self._trigger(self.TeamCreated, ctx, team=team, role=role, description=description)

    def set_team_role(self, team: TeamName, role: TeamRole, ctx: EventContext) -> None:
        """Change a team's role. Idempotent. Raises ``TeamUnknown``, and
        ``OwnersTeamProtected`` for any role but ADMIN on ``owners``."""
        current = self._team_role(team)
        if current is role:
            return
        if team == OWNERS_TEAM:
            raise OwnersTeamProtected(f"the owners team of {self.name} must stay admin")
        self._trigger(self.TeamRoleChanged, ctx, team=team, role=role, from_role=current)

    def set_team_description(self, team: TeamName, description: str, ctx: EventContext) -> None:
        """Change a team's description. Idempotent. Raises ``TeamUnknown``."""
        self._team_role(team)
        if self.team_descriptions[team] != description:
            self._trigger(self.TeamDescriptionChanged, ctx, team=team, description=description)

    def delete_team(self, team: TeamName, ctx: EventContext) -> None:
        """Delete a team and its default permission; its members stay org members.

        Raises ``TeamUnknown``, and ``OwnersTeamProtected`` for ``owners``. The team's
        grants on repositories live on those aggregates: the command layer revokes them.
        """
        self._team_role(team)
        if team == OWNERS_TEAM:
            raise OwnersTeamProtected(f"the owners team of {self.name} cannot be deleted")
        principal = self.team_principal(team)
        if principal in self.default_permissions:
            self._trigger(self.DefaultPermissionRemoved, ctx, principal=principal)
        self._trigger(self.TeamDeleted, ctx, team=team)

    def add_team_member(self, team: TeamName, user: AccountName, ctx: EventContext) -> None:
        """Put ``user`` in ``team``, making them an org member first if needed. Idempotent.

        Raises ``TeamUnknown``. The command layer checks that ``user`` is an account.
        """
        self._team_role(team)
        if user in self.team_members[team]:
            return
        if user not in self.members:
            self._trigger(self.MemberAdded, ctx, user=user)
        self._trigger(self.TeamMemberAdded, ctx, team=team, user=user)

    def remove_team_member(self, team: TeamName, user: AccountName, ctx: EventContext) -> None:
        """Take ``user`` out of ``team`` (they stay an org member).

        Raises ``TeamUnknown``, ``MemberUnknown`` if they are not in it, and
        ``OwnersTeamProtected`` for the last member of ``owners``.
        """
        self._team_role(team)
        if user not in self.team_members[team]:
            raise MemberUnknown(f"{user} is not in team {team} of organization {self.name}")
        if team == OWNERS_TEAM:
            self._check_not_last_owner(user)
        self._trigger(self.TeamMemberRemoved, ctx, team=team, user=user)

    # Robots

    def create_robot(
        self, short_name: RobotShortName, token_hash: str, ctx: EventContext, description: str = ""
    ) -> None:
        """A robot ``<org>+<short_name>`` with a hashed token. Raises ``RobotExists`` and
        ``CredentialInvalid`` for an empty hash."""
        if short_name in self.robots:
            raise RobotExists(f"existing robot with name: {self.name}+{short_name}")
        check_hash(token_hash, "robot token hash")
        self._trigger(
            self.RobotCreated,
            ctx,
            short_name=short_name,
            token_hash=token_hash,
            description=description,
        )

    def regenerate_robot_token(
        self, short_name: RobotShortName, token_hash: str, ctx: EventContext
    ) -> None:
        """Replace the robot's token hash. Raises ``RobotUnknown``, ``CredentialInvalid``."""
        self._check_robot(short_name)
        check_hash(token_hash, "robot token hash")
        self._trigger(self.RobotTokenRegenerated, ctx, short_name=short_name, token_hash=token_hash)

    def delete_robot(self, short_name: RobotShortName, ctx: EventContext) -> None:
        """Delete the robot and its default permission. Raises ``RobotUnknown``.

        Its repository grants live on those aggregates: the command layer revokes them.
        """
        self._check_robot(short_name)
        principal = self.robot_principal(short_name)
        if principal in self.default_permissions:
            self._trigger(self.DefaultPermissionRemoved, ctx, principal=principal)
        self._trigger(self.RobotDeleted, ctx, short_name=short_name)

    # Default permissions for new repositories (Quay's "prototypes")

    def set_default_permission(
        self, principal: Principal, role: RepositoryRole, ctx: EventContext
    ) -> None:
        """Give ``principal`` ``role`` on every repository created from now on. Idempotent.

        A team or robot must be one of this organisation's (``PermissionInvalid`` for
        another namespace, ``TeamUnknown``/``RobotUnknown`` for a missing one); a user
        may be anyone (the command layer checks the account exists).
        """
        if principal.kind is not PrincipalKind.USER:
            if principal.namespace != self.name:
                raise PermissionInvalid(f"{principal} is not of organization {self.name}")
            if principal.kind is PrincipalKind.TEAM:
                self._team_role(TeamName(principal.short_name))
            else:
                self._check_robot(RobotShortName(principal.short_name))
        if self.default_permissions.get(principal) is role:
            return
        self._trigger(self.DefaultPermissionSet, ctx, principal=principal, role=role)

    def remove_default_permission(self, principal: Principal, ctx: EventContext) -> None:
        """Raises ``DefaultPermissionUnknown`` if ``principal`` has none."""
        if principal not in self.default_permissions:
            raise DefaultPermissionUnknown(
                f"{principal} has no default permission in organization {self.name}"
            )
        self._trigger(self.DefaultPermissionRemoved, ctx, principal=principal)

    # Guards

    def _team_role(self, team: TeamName) -> TeamRole:
        role = self.team_roles.get(team)
        if role is None:
            raise TeamUnknown(f"team {team} is not in organization {self.name}")
        return role

    def _check_robot(self, short_name: RobotShortName) -> None:
        if short_name not in self.robots:
            raise RobotUnknown(f"could not find robot {self.name}+{short_name}")

    def _check_not_last_owner(self, user: AccountName) -> None:
        if self.team_members[TeamName(OWNERS_TEAM)] == {user}:
            raise OwnersTeamProtected(
                f"{user} is the last member of the owners team of {self.name}"
            )

    def set_tag_expiration_window(self, seconds: int, ctx: EventContext) -> None:
        """Set the time-machine window. Idempotent; ``InvalidInput`` below zero."""
        change = window_change(self.tag_expiration_s, seconds)
        if change is not None:
            self._trigger(self.TagExpirationWindowSet, ctx, **change)

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())
