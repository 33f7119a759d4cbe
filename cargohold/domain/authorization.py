"""Who may do what on a repository: a pure model over plain data.

This is the *independent model* of issue 4: the effective-permissions projection answers
the same questions from SQL views, and the stateful test compares the two. It reads no
aggregate and no view, only the facts below, which a caller (or the test's model) builds.

Rules, in Quay's terms. ``effective_role`` is the strongest role any rule gives; ``None``
means no access at all.

====  =======================================================  ==================
rule  who                                                      role on repo R
====  =======================================================  ==================
R1    a superuser (Quay: FEATURE_SUPERUSERS_FULL_ACCESS)       ADMIN
R2    the user whose name is R's namespace                     ADMIN
R3    a member of a team with role ADMIN of R's organisation   ADMIN
      (``owners`` is such a team)
R4    a user with an explicit grant on R                       that role
R5    a member of a team of R's organisation that has an       that role
      explicit grant on R
R6    a robot of R's organisation, existing, with an explicit  that role
      grant on R (robots get no R1-R5; R7 holds for them too)
R7    anyone, anonymous included, when R is PUBLIC             READ
====  =======================================================  ==================

Actions and the role each needs (Quay: v2 push and tag/manifest delete need write;
deleting the repository, its permissions, visibility and logs need admin):

===================  ======
action               needs
===================  ======
PULL                 READ
PUSH                 WRITE
DELETE_TAG           WRITE    (also a manifest delete on /v2)
DELETE_REPOSITORY    ADMIN
ADMIN                ADMIN    (permissions, visibility, state, logs, mirror)
===================  ======

Creating a repository is a question about a namespace, not a repository
(``may_create_repository``):

====  ==================================================================
C1    a superuser
C2    the user whose own namespace it is
C3    a member of a team with role CREATOR or ADMIN of the organisation
====  ==================================================================

Robots and anonymous callers never create repositories (Quay gives a robot creation only
through team membership, which this model leaves out).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from cargohold.domain.identity import (
    Principal,
    PrincipalKind,
    RepositoryRole,
    TeamRole,
    Visibility,
)


class Action(enum.Enum):
    PULL = "pull"
    PUSH = "push"
    DELETE_TAG = "delete_tag"
    DELETE_REPOSITORY = "delete_repository"
    ADMIN = "admin"


REQUIRED_ROLE: Mapping[Action, RepositoryRole] = {
    Action.PULL: RepositoryRole.READ,
    Action.PUSH: RepositoryRole.WRITE,
    Action.DELETE_TAG: RepositoryRole.WRITE,
    Action.DELETE_REPOSITORY: RepositoryRole.ADMIN,
    Action.ADMIN: RepositoryRole.ADMIN,
}


@dataclass(frozen=True)
class Requester:
    """Who asks: a user or a robot principal, or ``None`` for anonymous."""

    principal: Principal | None = None
    superuser: bool = False

    def __post_init__(self) -> None:
        if self.principal is not None and self.principal.kind is PrincipalKind.TEAM:
            raise ValueError("a team cannot act; callers are users, robots or anonymous")
        if self.superuser and (
            self.principal is None or self.principal.kind is not PrincipalKind.USER
        ):
            raise ValueError("only a user can be a superuser")


ANONYMOUS = Requester()


@dataclass(frozen=True)
class TeamFacts:
    role: TeamRole
    members: frozenset[str] = frozenset()


@dataclass(frozen=True)
class OrganizationFacts:
    """What the model needs of an organisation: its teams (by short name) and robots
    (short names)."""

    name: str
    teams: Mapping[str, TeamFacts] = field(default_factory=dict)
    robots: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RepositoryFacts:
    """What the model needs of a repository: ``namespace/name``'s namespace, its
    visibility and its explicit grants."""

    namespace: str
    visibility: Visibility = Visibility.PRIVATE
    grants: Mapping[Principal, RepositoryRole] = field(default_factory=dict)


def _strongest(roles: list[RepositoryRole]) -> RepositoryRole | None:
    return max(roles) if roles else None


def effective_role(
    caller: Requester,
    repository: RepositoryFacts,
    organization: OrganizationFacts | None = None,
) -> RepositoryRole | None:
    """The caller's role on ``repository`` by rules R1-R7, or ``None``.

    ``organization`` is the repository namespace's organisation, or ``None`` when the
    namespace is a user's (or nobody's). Raises ``ValueError`` if it is another
    organisation's facts.
    """
    if organization is not None and organization.name != repository.namespace:
        raise ValueError(f"facts of {organization.name} given for {repository.namespace}")
    roles: list[RepositoryRole] = []
    if repository.visibility is Visibility.PUBLIC:  # R7
        roles.append(RepositoryRole.READ)
    who = caller.principal
    if who is None:
        return _strongest(roles)
    if who.kind is PrincipalKind.ROBOT:  # R6
        grant = repository.grants.get(who)
        # Only organisations have robots: without one, no robot of this namespace exists.
        robot_exists = (
            who.namespace == repository.namespace
            and organization is not None
            and who.short_name in organization.robots
        )
        if grant is not None and robot_exists:
            roles.append(grant)
        return _strongest(roles)
    # A user.
    if caller.superuser:  # R1
        return RepositoryRole.ADMIN
    if who.name == repository.namespace:  # R2
        return RepositoryRole.ADMIN
    if organization is not None:
        for team_name, team in organization.teams.items():
            if who.name not in team.members:
                continue
            if team.role is TeamRole.ADMIN:  # R3
                return RepositoryRole.ADMIN
            team_grant = repository.grants.get(  # R5
                Principal(PrincipalKind.TEAM, f"{organization.name}/{team_name}")
            )
            if team_grant is not None:
                roles.append(team_grant)
    user_grant = repository.grants.get(who)  # R4
    if user_grant is not None:
        roles.append(user_grant)
    return _strongest(roles)


def may(
    caller: Requester,
    action: Action,
    repository: RepositoryFacts,
    organization: OrganizationFacts | None = None,
) -> bool:
    """May ``caller`` do ``action`` on ``repository``? (``effective_role`` >= needed)."""
    role = effective_role(caller, repository, organization)
    return role is not None and role >= REQUIRED_ROLE[action]


def may_create_repository(
    caller: Requester, namespace: str, organization: OrganizationFacts | None = None
) -> bool:
    """May ``caller`` create a repository in ``namespace``? Rules C1-C3.

    ``organization`` is ``namespace``'s organisation, or ``None`` for a user namespace.
    """
    if organization is not None and organization.name != namespace:
        raise ValueError(f"facts of {organization.name} given for {namespace}")
    who = caller.principal
    if who is None or who.kind is not PrincipalKind.USER:
        return False
    if caller.superuser or who.name == namespace:  # C1, C2
        return True
    if organization is None:
        return False
    return any(  # C3
        who.name in team.members and team.role >= TeamRole.CREATOR
        for team in organization.teams.values()
    )
