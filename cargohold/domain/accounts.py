"""Identity aggregates: ``Account`` (a user), ``Organization``, and ``NamespaceClaim``.

Same rules as ``repository.py``: typed past-tense events nested on each aggregate, every
event carrying the command's ``EventContext`` (``actor``, ``site_id``, ``hlc``,
``request_id``); guards in the public methods; ``apply`` only mutates state.

Secrets: only hashes enter events. The caller (the command layer, through the crypto
adapter) hashes passwords and robot tokens; the e-mail address is plain event state that
the at-rest cipher protects.

Duplicates, decided once for all the methods here:

- making something true that already is (adding a member twice, setting the same role,
  granting superuser twice) is a no-op: no event, no error, so HTTP PUTs are idempotent;
- creating a *named* thing that exists (a team, a robot) raises a typed ``Conflict``
  (``TeamExists``, ``RobotExists``), as Quay answers 400 for an existing robot; the
  command layer turns Quay's upsert PUT of a team into create-or-``set_team_role``;
- removing or changing something absent raises a typed ``NotFound``.

One namespace for users and organisations. Quay refuses an organisation named like a
user and vice versa. The ids ``account:<name>`` and ``organization:<name>`` differ, so
two concurrent creators would not collide on them; the command layer therefore saves a
``NamespaceClaim`` (id ``uuid5(site_id, "namespace:<name>")``) in the same ``save()`` as
the new ``Account`` or ``Organization``: the second creator of a name, whichever kind,
fails on the claim's primary key with the library's ``IntegrityError``, which it turns
into ``NameTaken``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from cargohold.domain.access import (
    OWNERS_TEAM,
    AccountName,
    ApiScope,
    NamespaceKind,
    Principal,
    PrincipalKind,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
)
from cargohold.domain.context import ContextEvent, EventContext
from cargohold.domain.errors import (
    ApiTokenUnknown,
    CredentialInvalid,
    DefaultPermissionUnknown,
    EmailInvalid,
    InvalidInput,
    MemberUnknown,
    OwnersTeamProtected,
    PermissionInvalid,
    RobotExists,
    RobotUnknown,
    ScopeInvalid,
    TeamExists,
    TeamUnknown,
)

# Deliberately loose: one "@", no spaces; deliverability is not the domain's business.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
EMAIL_MAX_LENGTH = 254


def _check_hash(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise CredentialInvalid(f"{what} must be a non-empty hash string")


def _check_email(email: str) -> None:
    """``""`` means "no address" (the first-start ``admin`` has none)."""
    if not isinstance(email, str):
        raise EmailInvalid("e-mail address must be a string")
    if email and (len(email) > EMAIL_MAX_LENGTH or _EMAIL_RE.fullmatch(email) is None):
        raise EmailInvalid(f"invalid e-mail address: {email[:200]!r}")


class Account(Aggregate):
    """A user. State: ``name``, ``email``, ``password_hash``, ``superuser``,
    ``api_tokens`` (the ids of its live API tokens; the views hold their scopes), and
    ``tag_expiration_s`` (the namespace's time-machine window, ``None`` for the
    installation's default).
    """

    # NOTE: v2 added ``tag_expiration_s``; see ``upcast_v1_v2``.
    class_version = 2

    class Event(ContextEvent):
        """Base of this aggregate's events (the command's provenance)."""

    class Created(Event, Aggregate.Created):
        name: AccountName
        email: str
        password_hash: str
        superuser: bool

    class PasswordChanged(Event):
        password_hash: str

        def apply(self, aggregate: Account) -> None:
            aggregate.password_hash = self.password_hash

    class SuperuserGranted(Event):
        def apply(self, aggregate: Account) -> None:
            aggregate.superuser = True

    class SuperuserRevoked(Event):
        def apply(self, aggregate: Account) -> None:
            aggregate.superuser = False

    class ApiTokenIssued(Event):
        """A scoped API token; only its hash is kept (the token is shown once)."""

        token_id: str
        token_hash: str
        scopes: tuple[ApiScope, ...]
        expires_at: datetime
        description: str

        def apply(self, aggregate: Account) -> None:
            aggregate.api_tokens.add(self.token_id)

    class ApiTokenRevoked(Event):
        token_id: str

        def apply(self, aggregate: Account) -> None:
            aggregate.api_tokens.discard(self.token_id)

    class TagExpirationWindowSet(Event):
        """The user namespace's time-machine window (Quay's ``tag_expiration_s``): how
        long a deleted or moved tag stays restorable. ``from_seconds`` is the window it
        replaces (``None``: the installation's default)."""

        seconds: int
        from_seconds: int | None

        def apply(self, aggregate: Account) -> None:
            aggregate.tag_expiration_s = self.seconds

    def __init__(self, name: AccountName, email: str, password_hash: str, superuser: bool) -> None:
        self.name = name
        self.email = email
        self.password_hash = password_hash
        self.superuser = superuser
        self.api_tokens: set[str] = set()
        self.tag_expiration_s: int | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot from before the time-machine window: the installation's default."""
        state["tag_expiration_s"] = None

    @staticmethod
    def create_id(site_id: UUID, name: AccountName) -> UUID:
        """``uuid5(site_id, "account:<name>")``. NOTE: persisted; never change it."""
        return uuid5(site_id, f"account:{name}")

    @classmethod
    def create(
        cls,
        name: AccountName,
        email: str,
        password_hash: str,
        ctx: EventContext,
        superuser: bool = False,
    ) -> Account:
        """A new user. Raises ``EmailInvalid`` or ``CredentialInvalid`` (empty hash)."""
        _check_email(email)
        _check_hash(password_hash, "password hash")
        return cls._create(
            cls.Created,
            id=cls.create_id(ctx.site_id, name),
            name=name,
            email=email,
            password_hash=password_hash,
            superuser=superuser,
            **ctx.event_fields(),
        )

    def change_password(self, password_hash: str, ctx: EventContext) -> None:
        """Record a new password hash (always an event: salted hashes never repeat)."""
        _check_hash(password_hash, "password hash")
        self._trigger(self.PasswordChanged, ctx, password_hash=password_hash)

    def grant_superuser(self, ctx: EventContext) -> None:
        """Idempotent."""
        if not self.superuser:
            self._trigger(self.SuperuserGranted, ctx)

    def revoke_superuser(self, ctx: EventContext) -> None:
        """Idempotent."""
        if self.superuser:
            self._trigger(self.SuperuserRevoked, ctx)

    def issue_api_token(
        self,
        token_id: str,
        token_hash: str,
        scopes: tuple[ApiScope, ...],
        expires_at: datetime,
        ctx: EventContext,
        description: str = "",
    ) -> None:
        """Record a new API token. Raises ``CredentialInvalid`` for an empty hash or id,
        ``ScopeInvalid`` for no scopes, and ``InvalidInput`` for a naive or past expiry."""
        _check_hash(token_hash, "API token hash")
        if not token_id or token_id in self.api_tokens:
            raise CredentialInvalid("an API token needs a new, non-empty id")
        if not scopes:
            raise ScopeInvalid("an API token needs at least one scope")
        if expires_at.tzinfo is None or expires_at <= ctx_time(ctx):
            raise InvalidInput("an API token must expire at an aware time in the future")
        self._trigger(
            self.ApiTokenIssued,
            ctx,
            token_id=token_id,
            token_hash=token_hash,
            scopes=tuple(sorted(set(scopes), key=lambda s: s.value)),
            expires_at=expires_at,
            description=description,
        )

    def revoke_api_token(self, token_id: str, ctx: EventContext) -> None:
        """Raises ``ApiTokenUnknown`` for a token this account does not hold."""
        if token_id not in self.api_tokens:
            raise ApiTokenUnknown(f"{self.name} has no API token {token_id[:64]!r}")
        self._trigger(self.ApiTokenRevoked, ctx, token_id=token_id)

    def set_tag_expiration_window(self, seconds: int, ctx: EventContext) -> None:
        """Set the time-machine window. Idempotent; ``InvalidInput`` below zero."""
        _check_window(seconds)
        if seconds != self.tag_expiration_s:
            self._trigger(
                self.TagExpirationWindowSet,
                ctx,
                seconds=seconds,
                from_seconds=self.tag_expiration_s,
            )

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())


def _check_window(seconds: int) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise InvalidInput("the tag expiration window must be a whole number of seconds >= 0")


def ctx_time(ctx: EventContext) -> datetime:
    """The wall-clock time of a command, from its HLC reading."""
    return datetime.fromtimestamp(ctx.hlc.wall_ms / 1000, tz=UTC)


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
        _check_hash(token_hash, "robot token hash")
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
        _check_hash(token_hash, "robot token hash")
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
        _check_window(seconds)
        if seconds != self.tag_expiration_s:
            self._trigger(
                self.TagExpirationWindowSet,
                ctx,
                seconds=seconds,
                from_seconds=self.tag_expiration_s,
            )

    def _trigger(self, event_class: type[Event], ctx: EventContext, **fields: Any) -> None:
        self.trigger_event(event_class, **fields, **ctx.event_fields())


class NamespaceClaim(Aggregate):
    """The claim of a name by a user or an organisation; one per name and site.

    It has one event and no methods: its only job is to make the second creator of a
    name fail on the primary key (see the module docstring).
    """

    class Event(ContextEvent):
        """Base of this aggregate's events (the command's provenance)."""

    class Created(Event, Aggregate.Created):
        name: AccountName
        kind: NamespaceKind

    def __init__(self, name: AccountName, kind: NamespaceKind) -> None:
        self.name = name
        self.kind = kind

    @staticmethod
    def create_id(site_id: UUID, name: AccountName) -> UUID:
        """``uuid5(site_id, "namespace:<name>")``. NOTE: persisted; never change it."""
        return uuid5(site_id, f"namespace:{name}")

    @classmethod
    def create(cls, name: AccountName, kind: NamespaceKind, ctx: EventContext) -> NamespaceClaim:
        return cls._create(
            cls.Created,
            id=cls.create_id(ctx.site_id, name),
            name=name,
            kind=kind,
            **ctx.event_fields(),
        )
