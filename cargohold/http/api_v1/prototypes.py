"""Default permissions of an organisation, Quay's "prototypes" (QUAY-API.md section 6).

All need an org admin. A prototype's ``id`` is ``uuid5(PROTOTYPE_NAMESPACE, str(principal))``
(``"user:alice"``, ``"team:acme/ci"``, ``"robot:acme+builder"``): one default permission
per principal and organisation, so the id is stable across nodes and replays without
being stored.

Deviations from Quay: ``activating_user`` ("only when this user creates the repository")
is not supported and refused (400) when given; an unknown delegate is 404 (Quay: 400
"Missing delegate user or team"). POST answers 200, as Quay.
"""

from __future__ import annotations

import uuid
from typing import Any

import falcon

from cargohold.commands.identity import IdentityService
from cargohold.domain.errors import (
    AccountUnknown,
    DefaultPermissionUnknown,
    InvalidInput,
    RobotUnknown,
    TeamUnknown,
)
from cargohold.domain.identity import Principal, PrincipalKind, RepositoryRole
from cargohold.http.api_v1.errors import invalid_request
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.render import avatar
from cargohold.http.api_v1.request import (
    Body,
    caller_of,
    identity_of,
    no_content,
    read_body,
    send,
)
from cargohold.projections.identity_queries import IdentityQueries

PROTOTYPE_NAMESPACE = uuid.UUID("0b6a3c52-9f0e-5d6f-8a57-2f4a1c7e9d10")


def prototype_id(principal: Principal) -> str:
    return str(uuid.uuid5(PROTOTYPE_NAMESPACE, str(principal)))


class _Prototypes:
    def __init__(self, guard: Guard, accounts: IdentityQueries, identity: IdentityService) -> None:
        self.guard = guard
        self.accounts = accounts
        self.identity = identity

    def _view(self, org: str, principal: Principal, role: RepositoryRole) -> dict[str, Any]:
        delegate: dict[str, Any]
        if principal.kind is PrincipalKind.TEAM:
            short = principal.short_name
            delegate = {"name": short, "kind": "team", "avatar": avatar(short, "team")}
        else:
            robot = principal.kind is PrincipalKind.ROBOT
            delegate = {
                "name": principal.name,
                "kind": "user",
                "is_robot": robot,
                "is_org_member": robot or principal.name in self.accounts.org_members(org),
                "avatar": avatar(principal.name, "robot" if robot else "user"),
            }
        return {
            "id": prototype_id(principal),
            "role": role.value,
            "activating_user": None,
            "delegate": delegate,
        }

    def _find(self, org: str, proto_id: str) -> tuple[Principal, RepositoryRole]:
        for principal, role in self.accounts.default_permissions(org):
            if prototype_id(principal) == proto_id:
                return principal, role
        raise DefaultPermissionUnknown(f"no default permission {proto_id[:64]!r} in {org}")

    def _delegate(self, org: str, delegate: Body) -> Principal:
        """The principal a ``delegate`` object names; it must exist (404 otherwise)."""
        name = delegate.text("name")
        kind = delegate.text("kind")
        try:
            if kind == "team":
                principal = Principal.team(org, name)
                if self.accounts.team(org, principal.short_name) is None:
                    raise TeamUnknown(f"team {name} is not in organization {org}")
                return principal
            if kind != "user":
                raise invalid_request("'delegate.kind' must be one of: user, team")
            if "+" in name:
                namespace, _, short = name.partition("+")
                principal = Principal.robot(namespace, short)
                if self.accounts.robot(namespace, short) is None:
                    raise RobotUnknown(f"could not find robot {name}")
                return principal
            principal = Principal.user(name)
        except InvalidInput as e:
            if kind == "team":
                raise TeamUnknown(f"team {name[:100]} is not in organization {org}") from e
            raise AccountUnknown(f"unknown user or robot: {name[:100]}") from e
        if self.accounts.account(principal.name) is None:
            raise AccountUnknown(f"unknown user: {name}")
        return principal


class PrototypesResource(_Prototypes):
    """``GET`` and ``POST`` on ``/organization/{org}/prototypes``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        send(
            resp,
            {
                "prototypes": [
                    self._view(name, p, role) for p, role in self.accounts.default_permissions(name)
                ]
            },
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        body = read_body(req)
        body.absent("activating_user", "default permissions apply to every creator")
        role = body.choice("role", RepositoryRole)
        principal = self._delegate(name, body.obj("delegate"))
        self.identity.set_default_permission(name, principal, role, caller_of(req))
        send(resp, self._view(name, principal, role))


class PrototypeResource(_Prototypes):
    """``PUT`` and ``DELETE`` on ``/organization/{org}/prototypes/{proto_id}``."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, org: str, proto_id: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        principal, _ = self._find(name, proto_id)
        role = read_body(req).choice("role", RepositoryRole)
        self.identity.set_default_permission(name, principal, role, caller_of(req))
        send(resp, self._view(name, principal, role))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, org: str, proto_id: str
    ) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        principal, _ = self._find(name, proto_id)
        self.identity.remove_default_permission(name, principal, caller_of(req))
        no_content(resp)
