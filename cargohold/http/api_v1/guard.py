"""Who may call what on /api/v1: Quay's checks, always the owner's rights *and* the token's
scopes together (a password or robot login has every scope; a token only its own).

==========================  =========================================================
check                       holds when
==========================  =========================================================
repository read/write/admin ``effective_role`` (rules R1-R7) capped by the token's
                            repo scopes; a public repository stays readable whatever
                            the scopes (R7 needs no credentials at all)
repository create           ``may_create_repository`` (C1-C3) and scope repo:create
organisation admin          superuser (acting as one: scope super:user), or scope
                            org:admin and member of a team of the organisation whose
                            role is admin
organisation member         organisation admin, or scope org:admin or user:read and a
                            member of the organisation
team member                 organisation admin, or scope org:admin or user:read and in
                            the team
user read / user admin      a user (not a robot) with scope user:read / user:admin
superuser                   ``identity.acts_as_superuser`` (flag and scope super:user)
==========================  =========================================================

A refusal is 401 (``AuthenticationRequired``) for an anonymous caller and 403
(``AccessDenied``) for a known one. Order: existence first where it is public knowledge
(users and organisations: GET /users/{u} and GET /organization/{org} are open), the
permission first where existence is itself a secret (repositories: a private one must
look the same as a missing one to whoever may not read it).
"""

from __future__ import annotations

from cargohold.commands.authentication import Identity
from cargohold.domain.errors import (
    AccessDenied,
    AuthenticationRequired,
    DomainError,
    InvalidInput,
    OrganizationUnknown,
    RepositoryUnknown,
)
from cargohold.domain.identity import (
    AccountName,
    ApiScope,
    PrincipalKind,
    RepositoryRole,
    TeamRole,
    Visibility,
)
from cargohold.domain.values import RepositoryName
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.queries import RegistryQueries


def deny(identity: Identity, detail: str = "Unauthorized") -> DomainError:
    """The refusal for ``identity``: 401 when anonymous, else 403."""
    if identity.anonymous:
        return AuthenticationRequired("Requires authentication")
    return AccessDenied(detail)


class Guard:
    """``authorization`` answers who may do what; ``content`` (by default the same) what exists.
    They differ when serving the registry as of a moment: the rules are the live ones,
    the organisations those of the moment (see ``projections/as_of.py``)."""

    def __init__(
        self,
        authorization: IdentityQueries,
        queries: RegistryQueries,
        content: IdentityQueries | None = None,
    ) -> None:
        self.authorization = authorization
        self.queries = queries
        self.content = authorization if content is None else content

    # -- users -------------------------------------------------------------------------

    def user(self, identity: Identity, scope: ApiScope) -> AccountName:
        """The calling user, who must hold ``scope``; robots are not users here."""
        principal = identity.principal
        if principal is None:
            raise deny(identity)
        if principal.kind is not PrincipalKind.USER:
            raise AccessDenied("a robot has no user account")
        if not identity.has_scope(scope):
            raise AccessDenied(f"the token lacks scope {scope.value}")
        return AccountName(principal.name)

    def superuser(self, identity: Identity) -> None:
        if not identity.acts_as_superuser:
            raise deny(identity, "Requires a superuser (and scope super:user)")

    # -- repositories ------------------------------------------------------------------

    def repository_name(self, namespace: str, repo: str) -> RepositoryName:
        """The repository a path names. A name that breaks the grammar names nothing."""
        try:
            return RepositoryName(f"{namespace}/{repo}")
        except InvalidInput:
            raise RepositoryUnknown(
                f"repository {namespace[:100]}/{repo[:100]} is not known"
            ) from None

    def is_public(self, name: str) -> bool:
        """Whether the repository ``name`` (a name the views hold) is public."""
        return self.queries.visibility(RepositoryName(name)) == Visibility.PUBLIC.value

    def repository_role(self, identity: Identity, name: RepositoryName) -> RepositoryRole | None:
        """The caller's role on ``name`` as the token's scopes let it act."""
        role = identity.cap(self.authorization.effective_role(identity.requester, str(name)))
        if role is None and self.is_public(name):
            role = RepositoryRole.READ  # R7 holds whatever a token's scopes say
        return role

    def repository(
        self, identity: Identity, name: RepositoryName, needed: RepositoryRole
    ) -> RepositoryRole:
        """Check ``needed`` on ``name``, then that it exists; returns the caller's role."""
        role = self.repository_role(identity, name)
        if role is None or role < needed:
            raise deny(identity)
        if not self.queries.repository_exists(name):
            raise RepositoryUnknown(f"repository {name} is not known")
        return role

    def may_create_repository(self, identity: Identity, namespace: str) -> bool:
        return identity.has_scope(
            ApiScope.REPO_CREATE
        ) and self.authorization.may_create_repository(identity.requester, namespace)

    # -- organisations -----------------------------------------------------------------

    def organization(self, org: str) -> AccountName:
        """The organisation a path names; ``OrganizationUnknown`` if there is none."""
        try:
            name = AccountName(org)
        except InvalidInput:
            raise OrganizationUnknown(f"unknown organization: {org[:100]}") from None
        if not self.content.organization_exists(name):
            raise OrganizationUnknown(f"unknown organization: {name}")
        return name

    def _member_user(self, identity: Identity) -> str | None:
        """The caller's name if it is a user whose scopes allow member-level reads."""
        p = identity.principal
        if p is None or p.kind is not PrincipalKind.USER:
            return None
        if identity.has_scope(ApiScope.ORG_ADMIN) or identity.has_scope(ApiScope.USER_READ):
            return p.name
        return None

    def is_org_admin(self, identity: Identity, org: str) -> bool:
        if identity.acts_as_superuser:
            return True
        p = identity.principal
        if p is None or p.kind is not PrincipalKind.USER:
            return False
        if not identity.has_scope(ApiScope.ORG_ADMIN):
            return False
        admin_teams = {t.name for t in self.authorization.teams(org) if t.role is TeamRole.ADMIN}
        return any(team in admin_teams for team in self.authorization.teams_of(org, p.name))

    def is_org_member(self, identity: Identity, org: str) -> bool:
        if self.is_org_admin(identity, org):
            return True
        user = self._member_user(identity)
        return user is not None and user in self.authorization.org_members(org)

    def is_team_member(self, identity: Identity, org: str, team: str) -> bool:
        user = self._member_user(identity)
        return user is not None and team in self.authorization.teams_of(org, user)

    def org_admin(self, identity: Identity, org: str) -> AccountName:
        """The organisation (which must exist), if the caller administers it."""
        name = self.organization(org)
        if not self.is_org_admin(identity, name):
            raise deny(identity, f"Requires an admin of {name} (and scope org:admin)")
        return name

    def org_member(self, identity: Identity, org: str) -> AccountName:
        name = self.organization(org)
        if not self.is_org_member(identity, name):
            raise deny(identity, f"Requires a member of {name}")
        return name
