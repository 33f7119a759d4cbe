"""Organisations and their members (QUAY-API.md section 2).

- ``POST /organization/`` (a user with ``user:admin``) -> 201 ``"Created"``; the caller
  becomes the only member of the new ``owners`` team. ``email``/``contact_email`` are
  checked to be strings and not stored (organisations have no e-mail address here).
- ``GET /organization/{org}``: anyone; ``teams``/``ordered_teams`` only for members, the
  invoice and plan fields and ``tag_expiration_s`` only for admins, as Quay.
- ``PUT /organization/{org}`` (org admin) ``{"tag_expiration_s"?}`` -> 200 the org view:
  the time-machine window, one of the configured options (400 otherwise; see
  commands/tag_windows.py). ``email``/``contact_email`` are checked to be strings and not
  stored; the invoice fields are refused (400).
- ``GET /organization/{org}/members``, ``GET/DELETE …/members/{member}``: org admin.
  A ``member`` may name a robot (``org+short``) on GET, as Quay; DELETE of a robot is
  refused (400): a robot leaves by being deleted.
"""

from __future__ import annotations

from typing import Any

import falcon

from cargohold.commands.identity import IdentityService
from cargohold.commands.tag_windows import TagWindows
from cargohold.domain.errors import MemberUnknown
from cargohold.domain.identity import AccountName, ApiScope, Principal, PrincipalKind
from cargohold.http.api_v1.errors import invalid_request
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.render import avatar, short_repository
from cargohold.http.api_v1.request import (
    caller_of,
    identity_of,
    no_content,
    read_body,
    send,
)
from cargohold.projections.identity_queries import IdentityQueries, TeamRow


def team_view(row: TeamRow, can_view: bool, repo_count: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "role": row.role.value,
        "avatar": avatar(row.name, "team"),
        "can_view": can_view,
        "repo_count": repo_count,
        "member_count": row.member_count,
        "is_synced": False,
    }


class _Orgs:
    def __init__(self, guard: Guard, accounts: IdentityQueries) -> None:
        self.guard = guard
        self.accounts = accounts

    def _member_view(self, org: str, name: str) -> dict[str, Any]:
        """A user (or robot) of ``org``, with its teams and explicitly granted repos."""
        if "+" in name:
            namespace, _, short = name.partition("+")
            principal = Principal.robot(namespace, short)
            repos = [r for r, _ in self.accounts.grants_of(principal)]
            return {
                "name": name,
                "kind": "robot",
                "avatar": avatar(name, "robot"),
                "teams": [],
                "repositories": [short_repository(r) for r in repos],
            }
        teams = self.accounts.teams_of(org, name)
        return {
            "name": name,
            "kind": "user",
            "avatar": avatar(name, "user"),
            "teams": [{"name": t, "avatar": avatar(t, "team")} for t in teams],
            "repositories": [
                short_repository(r) for r in self.accounts.grants_in_namespace_for_user(org, name)
            ],
        }


class _OrgChanges(_Orgs):
    def __init__(self, guard: Guard, accounts: IdentityQueries, identity: IdentityService) -> None:
        super().__init__(guard, accounts)
        self.identity = identity


class OrganizationsResource(_OrgChanges):
    """``POST /organization/``."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        owner = self.guard.user(identity_of(req), ApiScope.USER_ADMIN)
        body = read_body(req)
        name = AccountName(body.text("name"))
        body.optional_text("email")
        body.optional_text("contact_email")
        self.identity.create_organization(name, owner, caller_of(req))
        send(resp, "Created", status=201)


class OrganizationResource(_OrgChanges):
    """``GET`` and ``PUT`` on ``/organization/{org}``."""

    def __init__(
        self,
        guard: Guard,
        accounts: IdentityQueries,
        identity: IdentityService,
        tag_windows: TagWindows,
    ) -> None:
        super().__init__(guard, accounts, identity)
        self.tag_windows = tag_windows

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        identity = identity_of(req)
        name = self.guard.organization(org)
        is_admin = self.guard.is_org_admin(identity, name)
        is_member = is_admin or self.guard.is_org_member(identity, name)
        view: dict[str, Any] = {
            "name": name,
            "email": "",
            "avatar": avatar(name, "org"),
            "is_admin": is_admin,
            "is_member": is_member,
        }
        if is_member:
            mine = (
                set()
                if identity.principal is None
                else set(self.accounts.teams_of(name, identity.principal.name))
            )
            teams = self.accounts.teams(name)
            view["teams"] = {
                t.name: team_view(
                    t,
                    can_view=is_admin or t.name in mine,
                    repo_count=len(
                        self.accounts.grants_of(Principal(PrincipalKind.TEAM, f"{name}/{t.name}"))
                    ),
                )
                for t in teams
            }
            view["ordered_teams"] = [t.name for t in teams]
        if is_admin:
            view.update(
                {
                    "invoice_email": False,
                    "invoice_email_address": None,
                    "tag_expiration_s": self.tag_windows.seconds(name),
                    "is_free_account": True,
                }
            )
        send(resp, view)

    def on_put(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        body = read_body(req)
        body.optional_text("email")
        body.optional_text("contact_email")
        body.absent("invoice_email", "organisations have no invoices")
        body.absent("invoice_email_address", "organisations have no invoices")
        if body.has("tag_expiration_s"):
            seconds = self.tag_windows.check(body.data["tag_expiration_s"])
            self.identity.set_org_tag_expiration_window(name, seconds, caller_of(req))
        self.on_get(req, resp, name)


class MembersResource(_Orgs):
    """``GET /organization/{org}/members`` (users only, no robots, as Quay)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        members = [self._member_view(name, m) for m in self.accounts.org_members(name)]
        send(resp, {"members": members})


class MemberResource(_OrgChanges):
    """``GET/DELETE /organization/{org}/members/{member}``."""

    def _existing(self, org: str, member: str) -> str:
        if "+" in member:
            namespace, _, short = member.partition("+")
            if namespace == org and self.accounts.robot(namespace, short) is not None:
                return member
        elif member in self.accounts.org_members(org):
            return member
        raise MemberUnknown(f"{member[:100]} is not a member of organization {org}")

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, member: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        send(resp, self._member_view(name, self._existing(name, member)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, org: str, member: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        existing = self._existing(name, member)
        if "+" in existing:
            raise invalid_request("a robot is not removed as a member: delete the robot")
        self.identity.remove_member(name, AccountName(existing), caller_of(req))
        no_content(resp)
