"""Users: ``/user/`` (the caller), ``/users/{username}`` (anyone's public view) and the
superuser's ``/superuser/users/`` (QUAY-API.md section 11).

Deviations from Quay: no e-mail verification, disabling or deletion (there are no such
events yet), so ``verified`` and ``enabled`` are always true and a PUT that asks to change
``email`` or ``enabled`` is refused (400) rather than ignored. ``POST`` accepts an optional
``password``; without one, a password is generated and returned once, as Quay does.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

import falcon

from cargohold.commands.identity import IdentityService
from cargohold.commands.tag_windows import TagWindows
from cargohold.domain.errors import AccountUnknown, InvalidInput
from cargohold.domain.identity import AccountName, ApiScope, TeamRole
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.render import avatar, superuser_user
from cargohold.http.api_v1.request import (
    caller_of,
    encode_page_token,
    identity_of,
    page_after,
    query_int,
    read_body,
    send,
)
from cargohold.projections.identity_queries import AccountRow, IdentityQueries

MAX_USERS_PAGE = 100
GENERATED_PASSWORD_LENGTH = 32
_PASSWORD_ALPHABET = string.ascii_uppercase + string.digits


def generate_password() -> str:
    """Quay's form: 32 characters of ``[A-Z0-9]``."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))


class _Users:
    def __init__(self, guard: Guard, accounts: IdentityQueries) -> None:
        self.guard = guard
        self.accounts = accounts

    def _account(self, username: str) -> AccountRow:
        try:
            name = AccountName(username)
        except InvalidInput:
            raise AccountUnknown(f"unknown user: {username[:100]}") from None
        row = self.accounts.account(name)
        if row is None:
            raise AccountUnknown(f"unknown user: {name}")
        return row


class _UserChanges(_Users):
    def __init__(self, guard: Guard, accounts: IdentityQueries, identity: IdentityService) -> None:
        super().__init__(guard, accounts)
        self.identity = identity


class CurrentUserResource(_UserChanges):
    """``GET /user/``: the calling user (scope user:read). Anonymous: 401. ``PUT``: the
    time-machine window."""

    def __init__(
        self,
        guard: Guard,
        accounts: IdentityQueries,
        identity: IdentityService,
        tag_windows: TagWindows,
    ) -> None:
        super().__init__(guard, accounts, identity)
        self.tag_windows = tag_windows

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        identity = identity_of(req)
        name = self.guard.user(identity, ApiScope.USER_READ)
        row = self._account(name)
        organizations = []
        for org in self.accounts.organizations_of(name):
            admin_teams = {t.name for t in self.accounts.teams(org) if t.role is TeamRole.ADMIN}
            organizations.append(
                {
                    "name": org,
                    "avatar": avatar(org, "org"),
                    "can_create_repo": self.guard.may_create_repository(identity, org),
                    "public": False,
                    "is_org_admin": any(
                        t in admin_teams for t in self.accounts.teams_of(org, name)
                    ),
                    "preferred_namespace": False,
                }
            )
        view: dict[str, Any] = {
            "anonymous": False,
            "username": name,
            "avatar": avatar(name, "user"),
            "can_create_repo": self.guard.may_create_repository(identity, name),
            "is_me": True,
            "verified": True,
            "email": row.email,
            "logins": [],
            "invoice_email": False,
            "invoice_email_address": None,
            "preferred_namespace": False,
            "tag_expiration_s": self.tag_windows.seconds(name),
            "prompts": [],
            "company": None,
            "family_name": None,
            "given_name": None,
            "location": None,
            "is_free_account": True,
            "has_password_set": True,
            "organizations": organizations,
        }
        if row.superuser:
            view["super_user"] = True
        send(resp, view)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """``PUT /user/`` (scope user:admin): only ``tag_expiration_s`` (the user
        namespace's time-machine window) can change here; any other field is 400."""
        name = self.guard.user(identity_of(req), ApiScope.USER_ADMIN)
        body = read_body(req)
        for key in sorted(body.data):
            if key != "tag_expiration_s":
                body.absent(key, "only tag_expiration_s can be changed here")
        if body.has("tag_expiration_s"):
            seconds = self.tag_windows.check(body.data["tag_expiration_s"])
            self.identity.set_user_tag_expiration_window(name, seconds, caller_of(req))
        self.on_get(req, resp)


class PublicUserResource(_Users):
    """``GET /users/{username}``: anyone may look a user up (404 for none)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        row = self._account(username)
        send(resp, {"anonymous": False, "username": row.name, "avatar": avatar(row.name, "user")})


class SuperuserUsersResource(_UserChanges):
    """``GET /superuser/users/`` (``limit``, ``next_page``) and ``POST`` (a new user)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard.superuser(identity_of(req))
        limit = query_int(req, "limit", minimum=1, maximum=MAX_USERS_PAGE)
        after = page_after(req, "users")
        if limit is None and after is None:
            # As Quay: without ``limit``, every user and no token.
            send(resp, {"users": [superuser_user(r) for r in self.accounts.accounts()]})
            return
        size = limit or MAX_USERS_PAGE
        rows = self.accounts.accounts(after=after, limit=size + 1)
        out: dict[str, Any] = {"users": [superuser_user(r) for r in rows[:size]]}
        if len(rows) > size:
            out["next_page"] = encode_page_token("users", rows[size - 1].name)
        send(resp, out)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard.superuser(identity_of(req))
        body = read_body(req)
        name = AccountName(body.text("username"))
        email = body.optional_text("email") or ""
        given = body.optional_text("password", max_length=1024)
        password = generate_password() if given is None else given
        self.identity.create_user(name, email, password, caller_of(req))
        out = {"username": str(name), "email": email}
        if given is None:
            out["password"] = password  # shown this once; only its hash is kept
        send(resp, out)


class SuperuserUserResource(_UserChanges):
    """``GET/PUT /superuser/users/{username}``. No DELETE: accounts cannot be deleted yet."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        self.guard.superuser(identity_of(req))
        send(resp, superuser_user(self._account(username)))

    def on_put(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        self.guard.superuser(identity_of(req))
        row = self._account(username)
        body = read_body(req)
        body.absent("email", "e-mail addresses cannot be changed yet")
        body.absent("enabled", "accounts cannot be disabled yet")
        password = body.optional_text("password", max_length=1024)
        superuser = body.optional_bool("superuser")
        name = AccountName(row.name)
        caller = caller_of(req)
        if password is not None:
            self.identity.change_password(name, password, caller)
        if superuser is not None:
            self.identity.set_superuser(name, superuser, caller)
        send(resp, superuser_user(self._account(name)))
