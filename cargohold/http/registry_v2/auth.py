"""Docker token auth for /v2: the ``/v2/auth`` token endpoint and the per-request guard.

The flow clients expect (docker, podman, skopeo, crane, oras, containerd):

1. A request without acceptable credentials gets ``401 UNAUTHORIZED`` and
   ``WWW-Authenticate: Bearer realm="<base>/v2/auth",service="<service>",scope="..."``.
2. The client asks the realm for a token for that scope, with Basic credentials (a user's
   password, ``org+robot`` and its token, ``$token`` and an API token) or none at all.
3. ``/v2/auth`` answers with a signed JWT whose ``access`` claim holds the subset of the
   requested actions the caller holds; actions it lacks are dropped, not refused.
4. The client retries with ``Authorization: Bearer <jwt>``.

Basic credentials are also accepted on every /v2 request, and a request without any is
served as anonymous where anonymous may act (pulls of public repositories).

Actions and the role each needs: ``pull`` READ, ``push`` WRITE, ``delete`` WRITE (Quay:
tag and manifest deletion need write), ``*`` all three. In a pull-through cache's
organisation its members and robots hold READ on every name, cached yet or not. Pushing
to a repository that does not exist is allowed to whoever may create repositories in its
namespace (push-to-create); the write creates it.

A refusal is ``401 UNAUTHORIZED`` for an anonymous caller (log in and retry) and
``403 DENIED`` for a known one. With a bearer token that decision needs to know whether
the client *asked* for the action: clients cache a token per repository and reuse a pull
token for an upload, so a missing action the client never asked for gets 401 with
``error="insufficient_scope"`` (fetch a token for this scope), and only an action the
token endpoint already refused gets DENIED. The refused actions ride in the private
claim ``REFUSED_CLAIM``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import falcon

from cargohold.commands.authentication import ANONYMOUS, Authenticator, Identity
from cargohold.commands.replicas import replicated
from cargohold.domain.authorization import Requester
from cargohold.domain.credentials import TokenSigner
from cargohold.domain.errors import (
    AccessDenied,
    CredentialsInvalid,
    InvalidInput,
    TokenInvalid,
)
from cargohold.domain.identity import ApiScope, Principal, PrincipalKind, RepositoryRole, Visibility
from cargohold.domain.values import RepositoryName
from cargohold.http.auth_headers import Basic, Bearer, address_of, credentials_of
from cargohold.http.registry_v2.context import request_id_of
from cargohold.http.registry_v2.errors import V2Error

PULL, PUSH, DELETE = "pull", "push", "delete"
ACTIONS = (PULL, PUSH, DELETE)
NEEDED_ROLE = {PULL: RepositoryRole.READ, PUSH: RepositoryRole.WRITE, DELETE: RepositoryRole.WRITE}
ANONYMOUS_SUBJECT = "(anonymous)"
CATALOG = "catalog"
REFUSED_CLAIM = "cargohold_refused"
#: The API-token scopes of the credentials a token was issued to (absent: full rights), so
#: that a decision made from the subject (a mount's source) never exceeds them.
SCOPES_CLAIM = "cargohold_scopes"
MAX_SCOPES = 32


class AuthorizationViews(Protocol):
    def effective_role(self, caller: Requester, repository: str) -> RepositoryRole | None: ...

    def may_create_repository(self, caller: Requester, namespace: str) -> bool: ...

    def account(self, name: str) -> Any: ...

    def belongs_to(self, caller: Requester, org: str) -> bool: ...


class CacheViews(Protocol):
    def cache(self, org: str) -> Any | None: ...


class RepositoryViews(Protocol):
    def repository_exists(self, name: RepositoryName) -> bool: ...

    def visibility(self, name: RepositoryName) -> str | None: ...


class Unauthorized(V2Error):
    """401 UNAUTHORIZED with the Bearer challenge that tells the client where to log in."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(
            falcon.HTTP_401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": challenge}
        )


@dataclass
class Authorized:
    """What the guard learnt about a request (kept on ``req.context.auth``)."""

    identity: Identity
    # The access claim of a bearer token: repository name -> actions; None without one.
    token_access: dict[str, frozenset[str]] | None = None
    catalog: bool = False
    # Of a bearer token: repository name -> actions asked for and refused.
    refused: dict[str, frozenset[str]] = field(default_factory=dict)


class RegistryAuth:
    """The policy of /v2 auth; one per process, shared by every request."""

    def __init__(
        self,
        enabled: bool,
        service: str,
        token_ttl: int,
        signer: TokenSigner,
        authenticator: Authenticator,
        authorization: AuthorizationViews,
        repositories: RepositoryViews,
        caches: CacheViews | None = None,
    ) -> None:
        self.enabled = enabled
        self.service = service
        self.token_ttl = token_ttl
        self.signer = signer
        self.authenticator = authenticator
        self.authorization = authorization
        self.repositories = repositories
        self.caches = caches

    # -- what an identity holds --------------------------------------------------------

    def granted(self, identity: Identity, name: RepositoryName, wanted: Iterable[str]) -> list[str]:
        """The actions of ``wanted`` that ``identity`` holds on ``name``, in ACTIONS order."""
        wanted_set = set(wanted)
        if "*" in wanted_set:
            wanted_set = set(ACTIONS)
        wanted_set &= set(ACTIONS)
        if not wanted_set:
            return []
        if not self.enabled:
            return [a for a in ACTIONS if a in wanted_set]
        exists = self.repositories.repository_exists(name)
        role = identity.cap(self.authorization.effective_role(identity.requester, str(name)))
        if (
            role is None
            and exists
            and self.repositories.visibility(name) == Visibility.PUBLIC.value
        ):
            role = RepositoryRole.READ  # R7 holds whatever a token's scopes say
        if role is None and PULL in wanted_set and self._cache_member(identity, name):
            role = RepositoryRole.READ
        creates = (
            not exists
            and identity.has_scope(ApiScope.REPO_CREATE)
            and self.authorization.may_create_repository(identity.requester, name.namespace)
        )
        out = []
        for action in ACTIONS:
            if action not in wanted_set:
                continue
            if (role is not None and role >= NEEDED_ROLE[action]) or (
                creates and action in (PULL, PUSH)
            ):
                out.append(action)
        return out

    def _cache_member(self, identity: Identity, name: RepositoryName) -> bool:
        """Whether ``name`` is in a pull-through cache's organisation that ``identity``
        belongs to (a member or a robot of it): they may pull anything through it, cached
        or not, as in Quay. Only with the ``repo:read`` scope."""
        if self.caches is None or identity.anonymous or not identity.has_scope(ApiScope.REPO_READ):
            return False
        namespace = name.namespace
        return self.caches.cache(namespace) is not None and self.authorization.belongs_to(
            identity.requester, namespace
        )

    # -- identifying a /v2 request -----------------------------------------------------

    def identify(self, req: falcon.Request) -> Authorized:
        """Who sent ``req``; cached on the request. Raises ``CredentialsInvalid``,
        ``TokenInvalid`` and ``LoginThrottled`` for credentials that do not hold."""
        known: Authorized | None = getattr(req.context, "auth", None)
        if known is not None:
            return known
        creds = credentials_of(req) if self.enabled else None
        if isinstance(creds, Bearer):
            authorized = self._from_token(creds.token)
        elif isinstance(creds, Basic):
            identity = self.authenticator.basic(
                creds.username, creds.secret, address_of(req), request_id_of(req)
            )
            authorized = Authorized(identity, catalog=identity.has_scope(ApiScope.REPO_READ))
        else:
            authorized = Authorized(ANONYMOUS, catalog=True)
        req.context.auth = authorized
        return authorized

    def _from_token(self, token: str) -> Authorized:
        claims = self.signer.verify(token, self.service)
        subject = claims.get("sub")
        access: dict[str, frozenset[str]] = {}
        catalog = False
        for entry in claims["access"]:
            if not isinstance(entry, dict):
                raise TokenInvalid("malformed access claim")
            kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if not isinstance(name, str) or not isinstance(actions, list):
                raise TokenInvalid("malformed access claim")
            if kind == "repository":
                access[name] = frozenset(a for a in actions if isinstance(a, str))
            elif kind == "registry" and name == CATALOG and "*" in actions:
                catalog = True
        refused_claim = claims.get(REFUSED_CLAIM) or {}
        if not isinstance(refused_claim, dict):
            raise TokenInvalid("malformed refused claim")
        refused = {
            str(name): frozenset(a for a in actions if isinstance(a, str))
            for name, actions in refused_claim.items()
            if isinstance(actions, list)
        }
        identity = self._identity_of_subject(subject)
        scopes = claims.get(SCOPES_CLAIM)
        if scopes is not None:
            if not isinstance(scopes, list):
                raise TokenInvalid("malformed scopes claim")
            try:
                parsed = frozenset(ApiScope(s) for s in scopes)
            except ValueError:
                raise TokenInvalid("malformed scopes claim") from None
            identity = replace(identity, scopes=parsed)
        return Authorized(identity, access, catalog, refused)

    def _identity_of_subject(self, subject: Any) -> Identity:
        if not isinstance(subject, str) or subject == ANONYMOUS_SUBJECT:
            return ANONYMOUS
        if "+" in subject:
            return Identity(Principal(PrincipalKind.ROBOT, subject))
        account = self.authorization.account(subject)
        # NOTE: an account imported by bundle is never a superuser here (asked last, so
        # that only superusers pay for the question).
        superuser = bool(
            account is not None
            and account.superuser
            and self.authenticator.replicas.superuser_here(subject)
        )
        return Identity(Principal(PrincipalKind.USER, subject), superuser=superuser)

    # -- the guard ---------------------------------------------------------------------

    def require(self, req: falcon.Request, name: RepositoryName | None, action: str | None) -> None:
        """Check that ``req`` may do ``action`` on ``name``.

        ``name`` None means the base endpoint or the catalog, which need any valid
        credentials (or none) but no repository right. Raises ``AuthenticationRequired``
        (401) or ``AccessDenied`` (403), with ``challenge`` attributes for the header.
        """
        self._require(req, name, action)
        if name is not None and action in (PUSH, DELETE):
            # NOTE: after the rights check (it says nothing to who may not push anyway):
            # a repository imported from another site is read-only here; say so before
            # an upload starts rather than when it ends.
            origin = self.authenticator.replicas.repository_origin(name)
            if origin is not None:
                raise replicated(f"repository {name}", origin)

    def _require(
        self, req: falcon.Request, name: RepositoryName | None, action: str | None
    ) -> None:
        if not self.enabled:
            return
        authorized = self.identify(req)
        if name is None or action is None:
            if action == CATALOG and not authorized.catalog:
                raise self._unauthorized(req, "registry:catalog:*", insufficient=True)
            if action is None and authorized.identity.anonymous and authorized.token_access is None:
                raise self._unauthorized(req, None)
            return
        if authorized.token_access is not None:
            actions = authorized.token_access.get(str(name), frozenset())
            if action in actions or "*" in actions:
                return
            if action not in authorized.refused.get(str(name), frozenset()):
                raise self._unauthorized(req, _scope(name, action), insufficient=True)
        elif action in self.granted(authorized.identity, name, [action]):
            return
        if authorized.identity.anonymous:
            raise self._unauthorized(req, _scope(name, action))
        raise AccessDenied(f"{authorized.identity.name} may not {action} {name}")

    def may(self, req: falcon.Request, name: RepositoryName, action: str) -> bool:
        """Whether ``req``'s caller may do ``action`` on ``name``, as a yes or no, for an
        optional step such as reading a mount's source.

        A bearer token without an entry for ``name`` is judged by its subject's rights in
        the views: the client asked for a token for the mount target, not its source, and
        refusing would turn every cross-repository mount into a full upload.
        """
        if not self.enabled:
            return True
        authorized = self.identify(req)
        if authorized.token_access is not None:
            actions = authorized.token_access.get(str(name))
            if actions is not None:
                return action in actions or "*" in actions
        return action in self.granted(authorized.identity, name, [action])

    def challenge(self, req: falcon.Request, scope: str | None, error: str | None = None) -> str:
        parts = [f'realm="{req.forwarded_prefix}/v2/auth"', f'service="{self.service}"']
        if scope is not None:
            parts.append(f'scope="{scope}"')
        if error is not None:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    def _unauthorized(
        self, req: falcon.Request, scope: str | None, insufficient: bool = False
    ) -> Unauthorized:
        header = self.challenge(req, scope, "insufficient_scope" if insufficient else None)
        return Unauthorized("authentication required", header)

    def unauthorized(self, req: falcon.Request, error: Exception) -> Unauthorized:
        """The 401 for credentials that did not hold (``CredentialsInvalid``, ``TokenInvalid``)."""
        message = "invalid credentials" if isinstance(error, CredentialsInvalid) else str(error)
        return Unauthorized(message, self.challenge(req, None))

    # -- issuing tokens ----------------------------------------------------------------

    def issue(self, identity: Identity, scopes: list[str]) -> dict[str, Any]:
        """The body of a ``/v2/auth`` answer. Raises ``InvalidInput`` for a bad scope."""
        access: list[dict[str, Any]] = []
        refused: dict[str, set[str]] = {}
        for scope in scopes[:MAX_SCOPES]:
            kind, name, actions = _parse_scope(scope)
            if kind == "registry":
                lists = name == CATALOG and identity.has_scope(ApiScope.REPO_READ)
                access.append({"type": "registry", "name": name, "actions": ["*"] if lists else []})
                continue
            granted = self.granted(identity, RepositoryName(name), actions)
            access.append({"type": "repository", "name": name, "actions": granted})
            asked = set(ACTIONS) if "*" in actions else set(actions) & set(ACTIONS)
            if asked - set(granted):
                refused.setdefault(name, set()).update(asked - set(granted))
        subject = ANONYMOUS_SUBJECT if identity.anonymous else identity.name
        extra: dict[str, Any] = {}
        if refused:
            extra[REFUSED_CLAIM] = {n: sorted(a) for n, a in refused.items()}
        if identity.scopes is not None:
            extra[SCOPES_CLAIM] = sorted(scope.value for scope in identity.scopes)
        token = self.signer.issue(subject, access, self.service, self.token_ttl, extra or None)
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.token_ttl,
            "issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }


def _scope(name: RepositoryName, action: str) -> str:
    return f"repository:{name}:{'pull,push' if action == PUSH else action}"


def _parse_scope(scope: str) -> tuple[str, str, list[str]]:
    """``repository:acme/web:pull,push`` -> ("repository", "acme/web", ["pull", "push"]).

    The resource type may carry a class (``repository(plugin)``); the name may hold a
    ``host:port/`` prefix, so the actions are after the *last* colon.
    """
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        raise InvalidInput(f"malformed scope: {scope[:200]!r}")
    kind = kind.split("(", 1)[0]
    if kind not in ("repository", "registry"):
        raise InvalidInput(f"unknown resource type in scope: {scope[:200]!r}")
    return kind, name, [a.strip() for a in actions.split(",") if a.strip()]


class TokenResource:
    """``GET /v2/auth?service=...&scope=...``: a registry token for the caller."""

    def __init__(self, auth: RegistryAuth) -> None:
        self.auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        creds = credentials_of(req)
        if isinstance(creds, Bearer):
            raise CredentialsInvalid("log in with basic credentials to get a token")
        if isinstance(creds, Basic):
            identity = self.auth.authenticator.basic(
                creds.username, creds.secret, address_of(req), request_id_of(req)
            )
        else:
            identity = ANONYMOUS
        scopes: list[str] = []
        for value in req.get_param_as_list("scope", default=[]) or []:
            scopes.extend(value.split())
        body = self.auth.issue(identity, scopes)
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("Cache-Control", "no-store")
        resp.text = json.dumps(body)
