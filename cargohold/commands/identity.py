"""The write side of identity and access: users, organisations, teams, robots, API tokens.

Every command is load, decide, save through the unit of work (``unit_of_work.py``),
retried on a version conflict like the registry's, and returns once the views show its
effect. Creating a user or an
organisation saves its ``NamespaceClaim`` in the same ``save()``, so the second creator of
a name, of either kind, fails on the claim's primary key (``NameTaken``).

Cascades. Grants live on repositories, so removing a principal touches several
aggregates. The grants go first (one save per repository), then the principal: a crash
in between leaves a principal with fewer grants, never a grant that outlives its
principal and would be inherited by a namesake created later.

Who may run a command is the HTTP layer's question (it asks the views); these methods
check only the domain's own rules.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from cargohold.commands.registry import RegistryService
from cargohold.commands.replicas import NoReplicas, Replicas, replicated
from cargohold.commands.unit_of_work import Caller, UnitOfWork
from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.context import EventContext, ctx_time
from cargohold.domain.credentials import PasswordHasher, TokenMinter
from cargohold.domain.errors import (
    AccountUnknown,
    CredentialInvalid,
    DomainError,
    InvalidInput,
    NameTaken,
    OrganizationUnknown,
    PermissionUnknown,
    RepositoryUnknown,
    RobotInUse,
)
from cargohold.domain.identity import (
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
from cargohold.domain.values import RepositoryName

T = TypeVar("T")

#: API tokens live at most this long (Quay's app tokens default to no expiry; ours must).
MAX_API_TOKEN_LIFETIME = timedelta(days=365)
DEFAULT_API_TOKEN_LIFETIME = timedelta(days=90)


class GrantLookup(Protocol):
    """What the cascades need to know from the views."""

    def grants_of(self, principal: Principal) -> list[tuple[str, RepositoryRole]]:
        """``(repository name, role)`` of every explicit grant ``principal`` holds."""

    def grants_in_namespace_for_user(self, namespace: str, user: str) -> list[str]:
        """Repositories of ``namespace`` on which ``user`` holds an explicit grant."""


class MirrorRobots(Protocol):
    def mirrored_by(self, robot: str) -> list[str]:
        """The repositories whose live mirror writes as ``robot``."""


class IdentityService:
    def __init__(
        self,
        unit: UnitOfWork,
        hasher: PasswordHasher,
        minter: TokenMinter,
        grants: GrantLookup,
        registry: RegistryService,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        replicas: Replicas | None = None,
        mirror_robots: MirrorRobots | None = None,
    ) -> None:
        self.unit = unit
        self.mirror_robots = mirror_robots
        self.log = unit.log
        self.site_id = unit.site_id
        self.replicas: Replicas = replicas or NoReplicas()
        self.hasher = hasher
        self.minter = minter
        self.grants = grants
        self.registry = registry
        self._new_id = new_id

    # -- users -------------------------------------------------------------------------

    def create_user(
        self,
        name: AccountName,
        email: str,
        password: str,
        caller: Caller,
        superuser: bool = False,
    ) -> None:
        """A new user. Raises ``NameTaken``, ``EmailInvalid``, ``CredentialInvalid``."""
        password_hash = self._hash_password(password)
        ctx = self.unit.context(caller)
        claim = NamespaceClaim.create(name, NamespaceKind.USER, ctx)
        account = Account.create(name, email, password_hash, ctx, superuser=superuser)
        self._create(name, claim, account)

    def change_password(self, name: AccountName, password: str, caller: Caller) -> None:
        password_hash = self._hash_password(password)
        self._update_account(name, caller, lambda a, ctx: a.change_password(password_hash, ctx))

    def set_superuser(self, name: AccountName, superuser: bool, caller: Caller) -> None:
        def decide(account: Account, ctx: EventContext) -> None:
            if superuser:
                account.grant_superuser(ctx)
            else:
                account.revoke_superuser(ctx)

        self._update_account(name, caller, decide)

    def set_user_tag_expiration_window(
        self, name: AccountName, seconds: int, caller: Caller
    ) -> None:
        """Set a user namespace's time-machine window (see commands/tag_windows.py)."""
        self._update_account(name, caller, lambda a, ctx: a.set_tag_expiration_window(seconds, ctx))

    def account_exists(self, name: AccountName) -> bool:
        """Whether the user exists, here or imported from another site (it may then be
        named in this site's grants and teams, but not changed)."""
        if self._exists(Account.create_id(self.site_id, name)):
            return True
        return self.replicas.foreign_account(str(name)) is not None

    def issue_api_token(
        self,
        owner: AccountName,
        scopes: Sequence[ApiScope],
        caller: Caller,
        lifetime: timedelta = DEFAULT_API_TOKEN_LIFETIME,
        description: str = "",
    ) -> tuple[str, str]:
        """A new API token of ``owner``: ``(token id, token)``. The token is shown here
        once and kept only as a hash. Raises ``InvalidInput`` for a lifetime that is not
        positive or exceeds ``MAX_API_TOKEN_LIFETIME``, ``ScopeInvalid`` for no scopes."""
        if not timedelta(0) < lifetime <= MAX_API_TOKEN_LIFETIME:
            raise InvalidInput(
                f"an API token lives more than 0 s and at most {MAX_API_TOKEN_LIFETIME.days} days"
            )
        token, token_hash = self.minter.mint()
        token_id = self._new_id()

        def decide(account: Account, ctx: EventContext) -> None:
            account.issue_api_token(
                token_id,
                token_hash,
                tuple(scopes),
                ctx_time(ctx) + lifetime,
                ctx,
                description=description,
            )

        self._update_account(owner, caller, decide)
        return token_id, token

    def revoke_api_token(self, owner: AccountName, token_id: str, caller: Caller) -> None:
        """Raises ``ApiTokenUnknown``."""
        self._update_account(owner, caller, lambda a, ctx: a.revoke_api_token(token_id, ctx))

    # -- organisations -----------------------------------------------------------------

    def create_organization(self, name: AccountName, owner: AccountName, caller: Caller) -> None:
        """A new organisation whose ``owners`` team holds ``owner`` (an existing user).

        Raises ``NameTaken`` and ``AccountUnknown``.
        """
        self._require_account(owner)
        ctx = self.unit.context(caller)
        claim = NamespaceClaim.create(name, NamespaceKind.ORGANIZATION, ctx)
        organization = Organization.create(name, owner, ctx)
        self._create(name, claim, organization)

    def remove_member(self, org: AccountName, user: AccountName, caller: Caller) -> None:
        """Remove ``user`` from the organisation: their grants on its repositories, then
        their teams and membership (Quay's member DELETE)."""
        organization = self._load_organization(org)
        # NOTE: a dry run on a copy that is never saved: it raises what the real command
        # would (MemberUnknown, OwnersTeamProtected) before any repository is touched.
        organization.remove_member(user, self.unit.context(caller))
        principal = Principal(PrincipalKind.USER, str(user))
        for repository in self.grants.grants_in_namespace_for_user(str(org), str(user)):
            self._revoke_quietly(repository, principal, caller)
        self._update_organization(org, caller, lambda o, ctx: o.remove_member(user, ctx))

    def upsert_team(
        self,
        org: AccountName,
        team: TeamName,
        role: TeamRole,
        caller: Caller,
        description: str | None = None,
    ) -> bool:
        """Quay's team PUT: create the team, or set its role and (unless ``None``) its
        description. Returns whether it was new. Raises ``OwnersTeamProtected`` for a new
        role on owners."""

        def decide(organization: Organization, ctx: EventContext) -> bool:
            if team not in organization.team_roles:
                organization.create_team(team, role, ctx, description=description or "")
                return True
            organization.set_team_role(team, role, ctx)
            if description is not None:
                organization.set_team_description(team, description, ctx)
            return False

        return self._update_organization(org, caller, decide)

    def delete_team(self, org: AccountName, team: TeamName, caller: Caller) -> None:
        """The team's grants first, then the team. Raises ``TeamUnknown`` and
        ``OwnersTeamProtected``."""
        organization = self._load_organization(org)
        organization.delete_team(team, self.unit.context(caller))  # dry run: raises what it would
        principal = organization.team_principal(team)
        for repository, _role in self.grants.grants_of(principal):
            self._revoke_quietly(repository, principal, caller)
        self._update_organization(org, caller, lambda o, ctx: o.delete_team(team, ctx))

    def add_team_member(
        self, org: AccountName, team: TeamName, user: AccountName, caller: Caller
    ) -> None:
        """Raises ``AccountUnknown`` for a user that does not exist, ``TeamUnknown``."""
        self._require_account(user)
        self._update_organization(org, caller, lambda o, ctx: o.add_team_member(team, user, ctx))

    def remove_team_member(
        self, org: AccountName, team: TeamName, user: AccountName, caller: Caller
    ) -> None:
        self._update_organization(org, caller, lambda o, ctx: o.remove_team_member(team, user, ctx))

    def create_robot(
        self, org: AccountName, short_name: RobotShortName, caller: Caller, description: str = ""
    ) -> str:
        """A robot ``org+short_name``; returns its token (shown once). ``RobotExists``."""
        token, token_hash = self.minter.mint()
        self._update_organization(
            org,
            caller,
            lambda o, ctx: o.create_robot(short_name, token_hash, ctx, description=description),
        )
        return token

    def regenerate_robot_token(
        self, org: AccountName, short_name: RobotShortName, caller: Caller
    ) -> str:
        """A new token for the robot (the old one stops working); ``RobotUnknown``."""
        token, token_hash = self.minter.mint()
        self._update_organization(
            org, caller, lambda o, ctx: o.regenerate_robot_token(short_name, token_hash, ctx)
        )
        return token

    def delete_robot(self, org: AccountName, short_name: RobotShortName, caller: Caller) -> None:
        """The robot's grants first, then the robot. Raises ``RobotUnknown``, and
        ``RobotInUse`` while a repository mirror writes as it."""
        organization = self._load_organization(org)
        organization.delete_robot(short_name, self.unit.context(caller))  # dry run
        principal = organization.robot_principal(short_name)
        mirrored = self.mirror_robots.mirrored_by(principal.name) if self.mirror_robots else []
        if mirrored:
            raise RobotInUse(
                f"Robot is being used by a mirror: {principal.name} writes for the mirror of "
                f"{', '.join(mirrored[:5])}"
            )
        for repository, _role in self.grants.grants_of(principal):
            self._revoke_quietly(repository, principal, caller)
        self._update_organization(org, caller, lambda o, ctx: o.delete_robot(short_name, ctx))

    def set_default_permission(
        self, org: AccountName, principal: Principal, role: RepositoryRole, caller: Caller
    ) -> None:
        if principal.kind is PrincipalKind.USER:
            self._require_account(AccountName(principal.name))
        self._update_organization(
            org, caller, lambda o, ctx: o.set_default_permission(principal, role, ctx)
        )

    def remove_default_permission(
        self, org: AccountName, principal: Principal, caller: Caller
    ) -> None:
        self._update_organization(
            org, caller, lambda o, ctx: o.remove_default_permission(principal, ctx)
        )

    def set_org_tag_expiration_window(self, org: AccountName, seconds: int, caller: Caller) -> None:
        """Set an organisation's time-machine window (see commands/tag_windows.py)."""
        self._update_organization(
            org, caller, lambda o, ctx: o.set_tag_expiration_window(seconds, ctx)
        )

    def organization_exists(self, name: AccountName) -> bool:
        return self._exists(Organization.create_id(self.site_id, name))

    # -- the machinery -----------------------------------------------------------------

    def _hash_password(self, password: str) -> str:
        """Raises ``CredentialInvalid`` for a password that logins would take for an API
        token (its prefix), which would lock the account out."""
        if self.minter.looks_like_token(password):
            raise CredentialInvalid("a password may not look like an API token")
        return self.hasher.hash(password)

    def _exists(self, aggregate_id: UUID) -> bool:
        try:
            self.log.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return False
        return True

    def _require_account(self, name: AccountName) -> None:
        if not self.account_exists(name):
            raise AccountUnknown(f"unknown user: {name}")

    def _refuse_replicated(self, name: AccountName, what: str) -> None:
        origin = self.replicas.namespace_origin(str(name))
        if origin is not None:
            raise replicated(f"{what} {name}", origin)

    def _load_organization(self, org: AccountName) -> Organization:
        self._refuse_replicated(org, "organization")
        try:
            organization: Organization = self.log.repository.get(
                Organization.create_id(self.site_id, org)
            )
        except AggregateNotFoundError:
            raise OrganizationUnknown(f"unknown organization: {org}") from None
        return organization

    def _create(self, name: AccountName, *aggregates: Aggregate) -> None:
        # NOTE: an imported name has no local claim to collide with: ask the views.
        origin = self.replicas.namespace_origin(str(name))
        if origin is not None:
            raise NameTaken(
                f"a user or organization with the name {name} already exists "
                f"(replicated from site {origin})"
            )
        self.unit.create(
            aggregates,
            lambda: NameTaken(f"a user or organization with the name {name} already exists"),
        )

    def _update_account(
        self, name: AccountName, caller: Caller, decide: Callable[[Account, EventContext], T]
    ) -> T:
        self._refuse_replicated(name, "user")
        return self._update(
            Account.create_id(self.site_id, name),
            lambda: AccountUnknown(f"unknown user: {name}"),
            caller,
            decide,
        )

    def _update_organization(
        self,
        org: AccountName,
        caller: Caller,
        decide: Callable[[Organization, EventContext], T],
    ) -> T:
        self._refuse_replicated(org, "organization")
        return self._update(
            Organization.create_id(self.site_id, org),
            lambda: OrganizationUnknown(f"unknown organization: {org}"),
            caller,
            decide,
        )

    def _update(
        self,
        aggregate_id: UUID,
        unknown: Callable[[], DomainError],
        caller: Caller,
        decide: Callable[[Any, EventContext], T],
    ) -> T:
        def load(ctx: EventContext) -> Aggregate:
            try:
                aggregate: Aggregate = self.log.repository.get(aggregate_id)
            except AggregateNotFoundError:
                raise unknown() from None
            return aggregate

        return self.unit.execute(aggregate_id, caller, load, decide)

    def _revoke_quietly(self, repository: str, principal: Principal, caller: Caller) -> None:
        """Revoke a grant the views showed; one that is already gone is fine."""
        with contextlib.suppress(PermissionUnknown, RepositoryUnknown):
            self.registry.revoke(RepositoryName(repository), principal, caller)
