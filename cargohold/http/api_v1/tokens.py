"""API tokens, at Quay's app-token paths: ``/user/apptoken`` and ``/user/apptoken/{uuid}``.

Our tokens differ from Quay's app tokens in two ways, both on purpose:

- they carry *scopes* (``scopes`` in every view), which cap the owner's rights exactly as
  Quay's OAuth scopes do; Quay's app tokens act with the user's full rights;
- they always expire (``expiration_days``, default 90, at most 365), and ``token_code``
  appears only in the POST response: only a hash is stored, so no later GET can show it
  (Quay shows the code on GET of one token).

Who may mint: a password login (Basic), or a token holding ``user:admin``; and a token can
never mint one with scopes it does not hold itself (implied scopes count, so a
``repo:admin`` token may mint a ``repo:read`` one). Listing and reading need
``user:read``; minting and revoking need ``user:admin``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import falcon

from cargohold.commands.identity import (
    DEFAULT_API_TOKEN_LIFETIME,
    MAX_API_TOKEN_LIFETIME,
    IdentityService,
)
from cargohold.domain.errors import AccessDenied, ApiTokenUnknown
from cargohold.domain.identity import AccountName, ApiScope, expand_scopes
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.render import rfc2822
from cargohold.http.api_v1.request import (
    caller_of,
    identity_of,
    no_content,
    read_body,
    send,
)
from cargohold.projections.identity_queries import ApiTokenRow, IdentityQueries


def token_view(row: ApiTokenRow) -> dict[str, Any]:
    return {
        "uuid": row.token_id,
        "title": row.description,
        "scopes": sorted(scope.value for scope in row.scopes),
        "last_accessed": None,
        "created": rfc2822(row.created_at),
        "expiration": rfc2822(row.expires_at),
    }


class _Tokens:
    def __init__(self, guard: Guard, accounts: IdentityQueries, identity: IdentityService) -> None:
        self.guard = guard
        self.accounts = accounts
        self.identity = identity

    def _token(self, owner: AccountName, token_id: str) -> ApiTokenRow:
        for row in self.accounts.api_tokens_of(owner):
            if row.token_id == token_id:
                return row
        raise ApiTokenUnknown(f"{owner} has no API token {token_id[:64]!r}")


class ApiTokensResource(_Tokens):
    """``GET`` (the caller's tokens) and ``POST`` (mint one) on ``/user/apptoken``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        owner = self.guard.user(identity_of(req), ApiScope.USER_READ)
        send(resp, {"tokens": [token_view(r) for r in self.accounts.api_tokens_of(owner)]})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        identity = identity_of(req)
        owner = self.guard.user(identity, ApiScope.USER_ADMIN)
        body = read_body(req)
        title = body.text("title")
        scopes = [ApiScope.parse(s) for s in body.strings("scopes")]
        max_days = MAX_API_TOKEN_LIFETIME.days
        days = body.optional_int("expiration_days", minimum=1, maximum=max_days)
        lifetime = DEFAULT_API_TOKEN_LIFETIME if days is None else timedelta(days=days)
        if identity.scopes is not None:
            wider = expand_scopes(tuple(scopes)) - expand_scopes(identity.scopes)
            if wider:
                names = ", ".join(sorted(s.value for s in wider))
                raise AccessDenied(f"a token cannot mint a token with scopes it lacks: {names}")
        token_id, token = self.identity.issue_api_token(
            owner, sorted(set(scopes), key=lambda s: s.value), caller_of(req), lifetime, title
        )
        view = token_view(self._token(owner, token_id))
        view["token_code"] = token  # shown this once; only its hash is kept
        send(resp, {"token": view}, status=201)


class ApiTokenResource(_Tokens):
    """``GET`` and ``DELETE`` on ``/user/apptoken/{uuid}`` (the caller's own tokens only)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, token_id: str) -> None:
        owner = self.guard.user(identity_of(req), ApiScope.USER_READ)
        send(resp, {"token": token_view(self._token(owner, token_id))})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: str) -> None:
        owner = self.guard.user(identity_of(req), ApiScope.USER_ADMIN)
        self.identity.revoke_api_token(owner, token_id, caller_of(req))
        no_content(resp)
