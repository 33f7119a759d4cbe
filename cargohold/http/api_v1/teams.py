"""Teams of an organisation (QUAY-API.md section 3).

- ``PUT /organization/{org}/team/{team}`` (org admin): create the team or change its role;
  200 ``{name, description, can_view, role, avatar, new_team}``; a ``description`` given
  for an existing team replaces its own. The ``owners`` team must stay admin (400).
- ``DELETE …/team/{team}`` (org admin) -> 204; an unknown team is 404 (Quay: 400).
- ``GET …/team/{team}/members`` (team member or org admin).
- ``PUT/DELETE …/team/{team}/members/{member}`` (org admin). No e-mail invites: the user
  must exist (404 otherwise; Quay: 400 "Unknown user"); robots cannot join teams here
  (400), since team membership is a user's.
- ``GET …/team/{team}/permissions`` (org admin).
"""

from __future__ import annotations

from typing import Any

import falcon

from cargohold.commands.identity import IdentityService
from cargohold.domain.errors import AccountUnknown, InvalidInput, TeamUnknown
from cargohold.domain.identity import AccountName, Principal, PrincipalKind, TeamName, TeamRole
from cargohold.http.api_v1.errors import invalid_request
from cargohold.http.api_v1.guard import Guard, deny
from cargohold.http.api_v1.render import avatar, repository_permission, team_member
from cargohold.http.api_v1.request import (
    caller_of,
    identity_of,
    no_content,
    read_body,
    send,
)
from cargohold.projections.identity_queries import IdentityQueries, TeamRow


class _Teams:
    def __init__(self, guard: Guard, accounts: IdentityQueries) -> None:
        self.guard = guard
        self.accounts = accounts

    def _team(self, org: str, team: str) -> TeamRow:
        row = self.accounts.team(org, team)
        if row is None:
            raise TeamUnknown(f"team {team[:100]} is not in organization {org}")
        return row


class _TeamChanges(_Teams):
    def __init__(self, guard: Guard, accounts: IdentityQueries, identity: IdentityService) -> None:
        super().__init__(guard, accounts)
        self.identity = identity


class TeamResource(_TeamChanges):
    """``PUT`` and ``DELETE`` on ``/organization/{org}/team/{team}``."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, org: str, team: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        team_name = TeamName(team)
        body = read_body(req)
        role = body.choice("role", TeamRole)
        description = body.optional_text("description", max_length=1024)
        new = self.identity.upsert_team(
            name, team_name, role, caller_of(req), description=description
        )
        row = self._team(name, team_name)
        send(
            resp,
            {
                "name": row.name,
                "description": row.description,
                "can_view": True,
                "role": row.role.value,
                "avatar": avatar(row.name, "team"),
                "new_team": new,
            },
        )

    def on_delete(self, req: falcon.Request, resp: falcon.Response, org: str, team: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        row = self._team(name, team)
        self.identity.delete_team(name, TeamName(row.name), caller_of(req))
        no_content(resp)


class TeamMembersResource(_Teams):
    """``GET /organization/{org}/team/{team}/members``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, team: str) -> None:
        identity = identity_of(req)
        name = self.guard.organization(org)
        is_admin = self.guard.is_org_admin(identity, name)
        if not is_admin and not self.guard.is_team_member(identity, name, team):
            raise deny(identity, f"Requires a member of team {team[:100]} or an admin of {name}")
        row = self._team(name, team)
        members = [team_member(m) for m in self.accounts.team_members(name, row.name)]
        send(resp, {"name": row.name, "members": members, "can_edit": is_admin})


class TeamMemberResource(_TeamChanges):
    """``PUT`` and ``DELETE`` on ``/organization/{org}/team/{team}/members/{member}``."""

    def _user(self, member: str) -> AccountName:
        if "+" in member:
            raise invalid_request("robots cannot be team members")
        try:
            return AccountName(member)
        except InvalidInput:
            raise AccountUnknown(f"unknown user: {member[:100]}") from None

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, org: str, team: str, member: str
    ) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        row = self._team(name, team)
        user = self._user(member)
        self.identity.add_team_member(name, TeamName(row.name), user, caller_of(req))
        send(resp, team_member(user))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, org: str, team: str, member: str
    ) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        row = self._team(name, team)
        user = self._user(member)
        self.identity.remove_team_member(name, TeamName(row.name), user, caller_of(req))
        no_content(resp)


class TeamPermissionsResource(_Teams):
    """``GET /organization/{org}/team/{team}/permissions``: the team's repository grants."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, team: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        row = self._team(name, team)
        principal = Principal(PrincipalKind.TEAM, f"{name}/{row.name}")
        permissions: list[dict[str, Any]] = [
            repository_permission(repo, role, self.guard.is_public(repo))
            for repo, role in self.accounts.grants_of(principal)
        ]
        send(resp, {"permissions": permissions})
