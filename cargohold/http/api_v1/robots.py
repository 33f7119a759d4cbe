"""Robots of an organisation (QUAY-API.md section 4). A robot is ``{org}+{short}``.

Deviation from Quay, on purpose: a robot's token is shown exactly twice in its life, in
the response of ``PUT …/robots/{short}`` (201) and of ``POST …/regenerate`` (200). Only
its hash is stored, so ``GET`` of a robot or of the list never contains ``token``
(Quay stores tokens and lists them; ``token=true`` is accepted and has no effect).
An unknown robot is 404 (Quay: 400 ``{"message"}``). ``unstructured_metadata`` is not
stored, so a non-empty one is refused (400) rather than dropped.

Who: the list needs an org member (``permissions=true`` adds each robot's repositories
for admins only, as Quay); everything else needs an org admin (scope ``org:admin``;
Quay also wants ``user:admin`` for the permissions GET, a quirk not copied).
"""

from __future__ import annotations

import falcon

from cargohold.commands.identity import IdentityService
from cargohold.domain.errors import InvalidInput, RobotUnknown
from cargohold.domain.identity import Principal, PrincipalKind, RepositoryRole, RobotShortName
from cargohold.http.api_v1.errors import invalid_request
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.render import repository_permission, robot, short_repository
from cargohold.http.api_v1.request import (
    caller_of,
    identity_of,
    no_content,
    query_bool,
    query_int,
    read_body,
    send,
)
from cargohold.projections.identity_queries import IdentityQueries, RobotRow


class _Robots:
    def __init__(self, guard: Guard, accounts: IdentityQueries) -> None:
        self.guard = guard
        self.accounts = accounts

    def _robot(self, org: str, short: str) -> RobotRow:
        try:
            name = RobotShortName(short)
        except InvalidInput:
            raise RobotUnknown(f"could not find robot {org}+{short[:100]}") from None
        row = self.accounts.robot(org, name)
        if row is None:
            raise RobotUnknown(f"could not find robot {org}+{name}")
        return row

    def _grants(self, row: RobotRow) -> list[tuple[str, RepositoryRole]]:
        return self.accounts.grants_of(Principal(PrincipalKind.ROBOT, row.full_name))


class RobotsResource(_Robots):
    """``GET /organization/{org}/robots``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        identity = identity_of(req)
        name = self.guard.org_member(identity, org)
        with_permissions = query_bool(req, "permissions", False) and self.guard.is_org_admin(
            identity, name
        )
        query_bool(req, "token", True)  # accepted for Quay's clients; tokens are never listed
        limit = query_int(req, "limit", minimum=1, maximum=10_000)
        rows = self.accounts.robots(name)
        if limit is not None:
            rows = rows[:limit]
        views = []
        for row in rows:
            view = robot(row)
            if with_permissions:
                del view["unstructured_metadata"]
                view["teams"] = []
                view["repositories"] = [short_repository(r) for r, _ in self._grants(row)]
            views.append(view)
        send(resp, {"robots": views})


class _RobotChanges(_Robots):
    def __init__(self, guard: Guard, accounts: IdentityQueries, identity: IdentityService) -> None:
        super().__init__(guard, accounts)
        self.identity = identity


class RobotResource(_RobotChanges):
    """``PUT``, ``GET`` and ``DELETE`` on ``/organization/{org}/robots/{short}``."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, org: str, short: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        short_name = RobotShortName(short)
        body = read_body(req, required=False)
        description = body.optional_text("description") or ""
        metadata = body.data.get("unstructured_metadata")
        if metadata not in (None, {}):
            raise invalid_request("'unstructured_metadata' is not supported: it is not stored")
        token = self.identity.create_robot(
            name, short_name, caller_of(req), description=description
        )
        view = robot(self._robot(name, short_name))
        view["token"] = token  # shown at creation and regeneration only
        send(resp, view, status=201)

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, short: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        send(resp, robot(self._robot(name, short)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, org: str, short: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        row = self._robot(name, short)
        self.identity.delete_robot(name, RobotShortName(row.short_name), caller_of(req))
        no_content(resp)


class RobotRegenerateResource(_RobotChanges):
    """``POST /organization/{org}/robots/{short}/regenerate``: a new token, shown once."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str, short: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        row = self._robot(name, short)
        token = self.identity.regenerate_robot_token(
            name, RobotShortName(row.short_name), caller_of(req)
        )
        view = robot(row)
        view["token"] = token
        send(resp, view)


class RobotPermissionsResource(_Robots):
    """``GET /organization/{org}/robots/{short}/permissions``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, short: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        row = self._robot(name, short)
        permissions = [
            repository_permission(repo, role, self.guard.is_public(repo))
            for repo, role in self._grants(row)
        ]
        send(resp, {"permissions": permissions})
