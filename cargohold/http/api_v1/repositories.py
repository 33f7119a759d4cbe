"""Repositories (QUAY-API.md section 7).

- ``POST /repository`` (scope ``repo:create`` and C1-C3 on the namespace) -> 201
  ``{namespace, name, kind}``. ``description`` is accepted and not stored (repositories
  have no description yet); ``repo_kind`` must be ``image`` or null.
- ``GET /repository?namespace=&public=&starred=&next_page=``: at least one of namespace,
  public or starred (400 otherwise, as Quay). The repositories the caller may read,
  in name order, 100 a page; ``next_page`` is present only when there is more. Public
  repositories are readable by everyone, so they are part of every listing (``public``
  only makes the namespace optional); there are no stars yet, so ``starred=true`` lists
  nothing. A bad ``next_page`` is 400 (Quay silently restarts at page one).
- ``GET /repository/{ns}/{repo}`` (read, or public): with up to 500 tags unless
  ``includeTags=false``; ``can_write``/``can_admin`` as the caller's token may act.
- ``DELETE /repository/{ns}/{repo}`` (admin) -> 204.
- ``POST /repository/{ns}/{repo}/changevisibility`` (admin) -> ``{"success": true}``;
  a missing repository is 404 (Quay: 200 ``null``).

Private repositories are secret: a caller who may not read one gets 401/403 whether it
exists or not; only a caller with the right learns that it is missing (404).
"""

from __future__ import annotations

from typing import Any

import falcon

from cargohold.commands.authentication import Identity
from cargohold.commands.mirrors import MirrorService
from cargohold.commands.registry import RegistryService
from cargohold.domain.authorization import ANONYMOUS, Requester
from cargohold.domain.errors import AuthenticationRequired, OrganizationUnknown
from cargohold.domain.identity import NamespaceKind, RepositoryRole, Visibility
from cargohold.domain.values import RepositoryName
from cargohold.http.api_v1.errors import invalid_request
from cargohold.http.api_v1.guard import Guard, deny
from cargohold.http.api_v1.render import rfc2822
from cargohold.http.api_v1.request import (
    caller_of,
    encode_page_token,
    identity_of,
    no_content,
    page_after,
    query_bool,
    read_body,
    send,
)
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.queries import RegistryQueries

PAGE_SIZE = 100
MAX_TAGS = 500


def listing_caller(identity: Identity) -> Requester:
    """Whom to list for: the identity, unless its token has no repository scope at all
    (then only what anyone may read)."""
    if identity.cap(RepositoryRole.ADMIN) is None:
        return ANONYMOUS
    return identity.requester


class _Repositories:
    def __init__(self, guard: Guard, registry: RegistryService) -> None:
        self.guard = guard
        self.registry = registry


class _RepositoryViews(_Repositories):
    def __init__(
        self,
        guard: Guard,
        accounts: IdentityQueries,
        queries: RegistryQueries,
        registry: RegistryService,
    ) -> None:
        super().__init__(guard, registry)
        self.accounts = accounts
        self.queries = queries


class RepositoriesResource(_RepositoryViews):
    """``POST /repository`` and ``GET /repository``."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        identity = identity_of(req)
        if identity.principal is None:
            raise AuthenticationRequired("Requires authentication")
        body = read_body(req)
        repo = body.text("repository")
        visibility = body.choice("visibility", Visibility)
        body.optional_text("description", max_length=64 * 1024)
        # The default namespace: a user's own, or a robot's organisation (where it will be
        # refused: robots do not create repositories).
        namespace = body.optional_text("namespace") or identity.principal.namespace
        if body.data.get("repo_kind") not in (None, "image"):
            raise invalid_request("'repo_kind' must be image (or null)")
        if "/" in repo:
            raise invalid_request(f"invalid repository name: {repo[:200]!r}")
        name = RepositoryName(f"{namespace}/{repo}")
        if not self.guard.may_create_repository(identity, namespace):
            raise deny(identity, f"Requires permission to create repositories in {namespace}")
        if self.accounts.namespace_kind(namespace) is None:
            raise OrganizationUnknown(f"unknown namespace: {namespace}")
        self.registry.create_repository(name, caller_of(req), visibility)
        send(resp, {"namespace": namespace, "name": repo, "kind": "image"}, status=201)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        identity = identity_of(req)
        namespace = req.get_param("namespace")
        public = query_bool(req, "public", False)
        starred = query_bool(req, "starred", False)
        if namespace is None and not public and not starred:
            raise invalid_request("one of 'namespace', 'public' or 'starred' is required")
        after = page_after(req, "repositories")
        names: list[str] = []
        if not starred:
            names = self.accounts.readable_repositories(
                listing_caller(identity), after=after, limit=PAGE_SIZE + 1, namespace=namespace
            )
        out: dict[str, Any] = {"repositories": []}
        visibility = self.queries.visibilities(names[:PAGE_SIZE])
        for full in names[:PAGE_SIZE]:
            ns, _, short = full.partition("/")
            entry: dict[str, Any] = {
                "namespace": ns,
                "name": short,
                "description": "",
                "is_public": visibility.get(full) == Visibility.PUBLIC.value,
                "kind": "image",
                "state": "NORMAL",
            }
            if not identity.anonymous:
                entry["is_starred"] = False
            out["repositories"].append(entry)
        if len(names) > PAGE_SIZE:
            out["next_page"] = encode_page_token("repositories", names[PAGE_SIZE - 1])
        send(resp, out)


class RepositoryResource(_RepositoryViews):
    """``GET`` and ``DELETE`` on ``/repository/{namespace}/{repo}``. A deletion takes the
    repository's mirror with it (as Quay's does), the mirror first: a crash between the
    two leaves a repository without a mirror, and deleting it again finishes."""

    def __init__(
        self,
        guard: Guard,
        accounts: IdentityQueries,
        queries: RegistryQueries,
        registry: RegistryService,
        mirrors: MirrorService,
    ) -> None:
        super().__init__(guard, accounts, queries, registry)
        self.mirrors = mirrors

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str) -> None:
        identity = identity_of(req)
        name = self.guard.repository_name(namespace, repo)
        role = self.guard.repository(identity, name, RepositoryRole.READ)
        include_tags = query_bool(req, "includeTags", True)
        view: dict[str, Any] = {
            "namespace": name.namespace,
            "name": repo,
            "kind": "image",
            "description": "",
            "is_public": self.guard.is_public(name),
            "is_organization": self.accounts.namespace_kind(name.namespace)
            is NamespaceKind.ORGANIZATION,
            "is_starred": False,
            "status_token": "",
            "trust_enabled": False,
            "is_free_account": True,
            "state": "NORMAL",
            "can_write": role >= RepositoryRole.WRITE,
            "can_admin": role >= RepositoryRole.ADMIN,
        }
        if include_tags:
            view["tags"] = self._tags(name)
        send(resp, view)

    def _tags(self, name: RepositoryName) -> dict[str, Any]:
        tags: dict[str, Any] = {}
        for row in self.queries.current_tags(name, MAX_TAGS):
            tags[row.tag] = {
                "name": row.tag,
                "size": None,
                "last_modified": rfc2822(row.updated_at),
                "manifest_digest": str(row.digest),
            }
        return tags

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str
    ) -> None:
        identity = identity_of(req)
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity, name, RepositoryRole.ADMIN)
        self.mirrors.delete(name, caller_of(req))
        self.registry.delete_repository(name, caller_of(req))
        no_content(resp)


class VisibilityResource(_Repositories):
    """``POST /repository/{namespace}/{repo}/changevisibility``."""

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, repo: str
    ) -> None:
        identity = identity_of(req)
        name = self.guard.repository_name(namespace, repo)
        self.guard.repository(identity, name, RepositoryRole.ADMIN)
        visibility = read_body(req).choice("visibility", Visibility)
        self.registry.set_visibility(name, visibility, caller_of(req))
        send(resp, {"success": True})
