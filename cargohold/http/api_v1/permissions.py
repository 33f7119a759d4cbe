"""Explicit repository permissions (QUAY-API.md section 5). Every call needs repository
admin (scope ``repo:admin``), checked before anything is looked up.

``{username}`` names a user (``alice``) or a robot (``acme+builder``); ``{team}`` a team
of the repository's organisation. A PUT body is ``{"role": "read"|"write"|"admin"}``.

Deviations from Quay, on purpose: a principal without a grant, an unknown user, robot or
team are 404 ``not_found`` (Quay: 400 ``{"message"}``); the namespace owner and a team or
robot of another namespace stay 400 as in Quay.
"""

from __future__ import annotations

from typing import Any

import falcon

from cargohold.commands.authentication import Identity
from cargohold.commands.registry import RegistryService
from cargohold.domain.errors import (
    AccountUnknown,
    InvalidInput,
    PermissionUnknown,
    RobotUnknown,
    TeamUnknown,
)
from cargohold.domain.identity import (
    NamespaceKind,
    Principal,
    PrincipalKind,
    RepositoryRole,
)
from cargohold.domain.values import RepositoryName
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.render import avatar
from cargohold.http.api_v1.request import (
    caller_of,
    identity_of,
    no_content,
    read_body,
    send,
)
from cargohold.projections.identity_queries import IdentityQueries


class _Permissions:
    def __init__(self, guard: Guard, accounts: IdentityQueries) -> None:
        self.guard = guard
        self.accounts = accounts

    def _admin(self, identity: Identity, namespace: str, repo: str) -> RepositoryName:
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity, name, RepositoryRole.ADMIN)
        return name

    def _grants(
        self, name: RepositoryName, kind: PrincipalKind
    ) -> list[tuple[Principal, RepositoryRole]]:
        return [(p, r) for p, r in self.accounts.repository_grants(str(name)) if p.kind is kind]

    def _grant_of(self, name: RepositoryName, principal: Principal) -> RepositoryRole:
        for p, role in self.accounts.repository_grants(str(name)):
            if p == principal:
                return role
        raise PermissionUnknown(f"{principal.name} has no permission on repository {name}")

    def _user_view(
        self, name: RepositoryName, principal: Principal, role: RepositoryRole
    ) -> dict[str, Any]:
        robot = principal.kind is PrincipalKind.ROBOT
        view: dict[str, Any] = {
            "role": role.value,
            "name": principal.name,
            "is_robot": robot,
            "avatar": avatar(principal.name, "robot" if robot else "user"),
        }
        namespace = name.namespace
        if self.accounts.namespace_kind(namespace) is NamespaceKind.ORGANIZATION:
            view["is_org_member"] = (
                principal.namespace == namespace
                if robot
                else principal.name in self.accounts.org_members(namespace)
            )
        return view

    def _user_principal(self, username: str) -> Principal:
        """A user or robot by name (404 for a name no account could have)."""
        try:
            if "+" in username:
                namespace, _, short = username.partition("+")
                return Principal.robot(namespace, short)
            return Principal.user(username)
        except InvalidInput:
            if "+" in username:
                raise RobotUnknown(f"could not find robot {username[:100]}") from None
            raise AccountUnknown(f"unknown user: {username[:100]}") from None

    def _existing_user_principal(self, username: str) -> Principal:
        principal = self._user_principal(username)
        if principal.kind is PrincipalKind.ROBOT:
            if self.accounts.robot(principal.namespace, principal.short_name) is None:
                raise RobotUnknown(f"could not find robot {principal.name}")
        elif self.accounts.account(principal.name) is None:
            raise AccountUnknown(f"unknown user: {principal.name}")
        return principal

    def _team_principal(self, name: RepositoryName, team: str) -> Principal:
        row = self.accounts.team(name.namespace, team)
        if row is None:
            raise TeamUnknown(f"team {team[:100]} is not in organization {name.namespace}")
        return Principal(PrincipalKind.TEAM, f"{row.org}/{row.name}")

    def _team_view(self, principal: Principal, role: RepositoryRole) -> dict[str, Any]:
        short = principal.short_name
        return {"role": role.value, "name": short, "avatar": avatar(short, "team")}


class UserPermissionsResource(_Permissions):
    """``GET …/permissions/user/``: users and robots, keyed by name."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        grants = self._grants(name, PrincipalKind.USER) + self._grants(name, PrincipalKind.ROBOT)
        send(resp, {"permissions": {p.name: self._user_view(name, p, r) for p, r in grants}})


class _PermissionChanges(_Permissions):
    def __init__(self, guard: Guard, accounts: IdentityQueries, registry: RegistryService) -> None:
        super().__init__(guard, accounts)
        self.registry = registry


class UserPermissionResource(_PermissionChanges):
    """``GET``, ``PUT`` and ``DELETE`` on ``…/permissions/user/{username}``."""

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, username: str
    ) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        principal = self._user_principal(username)
        send(resp, self._user_view(name, principal, self._grant_of(name, principal)))

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, username: str
    ) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        role = read_body(req).choice("role", RepositoryRole)
        principal = self._existing_user_principal(username)
        self.registry.grant(name, principal, role, caller_of(req))
        send(resp, self._user_view(name, principal, role))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, username: str
    ) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        principal = self._user_principal(username)
        self.registry.revoke(name, principal, caller_of(req))
        no_content(resp)


class TransitivePermissionResource(_Permissions):
    """``GET …/permissions/user/{username}/transitive``: the direct grant and those
    through the user's teams, ``[{"role"}]``; 404 when there are none."""

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, username: str
    ) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        principal = self._existing_user_principal(username)
        holders = {principal}
        if principal.kind is PrincipalKind.USER:
            holders |= {
                Principal(PrincipalKind.TEAM, f"{name.namespace}/{team}")
                for team in self.accounts.teams_of(name.namespace, principal.name)
            }
        roles = [r for p, r in self.accounts.repository_grants(str(name)) if p in holders]
        if not roles:
            raise PermissionUnknown(f"{principal.name} has no permission on repository {name}")
        send(resp, {"permissions": [{"role": r.value} for r in roles]})


class TeamPermissionsResource(_Permissions):
    """``GET …/permissions/team/``: teams, keyed by short name."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        grants = self._grants(name, PrincipalKind.TEAM)
        send(resp, {"permissions": {p.short_name: self._team_view(p, r) for p, r in grants}})


class TeamPermissionResource(_PermissionChanges):
    """``GET``, ``PUT`` and ``DELETE`` on ``…/permissions/team/{team}``."""

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, team: str
    ) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        principal = self._team_principal(name, team)
        send(resp, {"role": self._grant_of(name, principal).value})

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, team: str
    ) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        role = read_body(req).choice("role", RepositoryRole)
        principal = self._team_principal(name, team)
        self.registry.grant(name, principal, role, caller_of(req))
        send(resp, self._team_view(principal, role))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str, team: str
    ) -> None:
        name = self._admin(identity_of(req), namespace, repo)
        principal = self._team_principal(name, team)
        self.registry.revoke(name, principal, caller_of(req))
        no_content(resp)
