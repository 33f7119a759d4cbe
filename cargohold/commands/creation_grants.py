"""The explicit grants a new repository starts with (Quay's rules).

A repository created in an organisation (explicitly or by its first push) gets the
organisation's default permissions, and admin for the user who created it, the
strongest role winning where both name one principal; in a user's own namespace it gets
none (the owner is admin by rule R2 of ``domain/authorization.py``). They are saved with
the repository's ``Created`` event, in one ``save()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from cargohold.domain.identity import Principal, PrincipalKind, RepositoryRole
from cargohold.domain.values import Actor, ActorKind, RepositoryName

#: The explicit grants a new repository starts with, given its name and its creator.
CreationGrants = Callable[[RepositoryName, Actor], Sequence[tuple[Principal, RepositoryRole]]]


def no_creation_grants(
    name: RepositoryName, creator: Actor
) -> Sequence[tuple[Principal, RepositoryRole]]:
    return ()


class OrganizationDefaults(Protocol):
    """What the rules read from the views."""

    def organization_exists(self, name: str) -> bool: ...

    def default_permissions(self, org: str) -> Sequence[tuple[Principal, RepositoryRole]]:
        """The organisation's default permissions (``prototypes``)."""


def quay_creation_grants(organizations: OrganizationDefaults) -> CreationGrants:
    """Quay's grants for a new repository (the module docstring)."""

    def grants(name: RepositoryName, creator: Actor) -> list[tuple[Principal, RepositoryRole]]:
        namespace = name.namespace
        if not organizations.organization_exists(namespace):
            return []
        roles: dict[Principal, RepositoryRole] = dict(organizations.default_permissions(namespace))
        if creator.kind is ActorKind.USER and creator.name != namespace:
            roles[Principal(PrincipalKind.USER, creator.name)] = RepositoryRole.ADMIN
        return sorted(roles.items(), key=lambda item: item[0].sort_key)

    return grants
