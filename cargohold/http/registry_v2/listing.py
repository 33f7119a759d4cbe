"""Listings: tags, the catalog, and referrers."""

from __future__ import annotations

import json
from typing import Any

import falcon

from cargohold.domain.errors import RepositoryUnknown
from cargohold.domain.values import Digest, MediaType, RepositoryName
from cargohold.http.registry_v2 import headers as h
from cargohold.http.registry_v2.auth import RegistryAuth
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.queries import PositionCache, RegistryQueries

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# A page never exceeds this, whatever ``n`` asks for; the Link header leads on.
MAX_PAGE = 10_000
# Rendered tag lists kept per worker process (a 10,000-tag page is ~90 KB).
TAG_CACHE_BYTES = 16 * 1024 * 1024


def _page(req: falcon.Request, resp: falcon.Response, fetch: Any, path: str) -> list[str]:
    """Run ``fetch(n, last)`` for one page and set the Link header when more follow."""
    n = h.parse_page_size(req.get_param("n"), MAX_PAGE)
    last = req.get_param("last")
    if n == 0:
        return []
    limit = MAX_PAGE if n is None else n
    items: list[str] = fetch(limit + 1, last)
    if len(items) > limit:
        items = items[:limit]
        resp.set_header("Link", h.next_link(path, limit, items[-1]))
    return items


def _tags_json(name: str, tags: list[str]) -> str:
    """The tags/list body. PERF: the tag grammar (``[A-Za-z0-9_][A-Za-z0-9._-]*``)
    needs no JSON escaping, so the list is one join instead of ``json.dumps`` of 10,000
    strings; anything unexpected in the views still goes through ``json.dumps``."""
    joined = '","'.join(tags)
    if not joined.isascii() or '"' in joined or "\\" in joined or not joined.isprintable():
        return json.dumps({"name": name, "tags": tags})
    listed = f'["{joined}"]' if tags else "[]"
    return f'{{"name": {json.dumps(name)}, "tags": {listed}}}'


class TagsResource:
    """``GET /v2/<name>/tags/list``.

    PERF: a repository's tags change far more rarely than they are read; the rendered
    page (body and Link header) is cached per (repository, n, last) until the views
    move (``PositionCache``), so a repeated listing costs one indexed read.
    """

    def __init__(self, queries: RegistryQueries) -> None:
        self.queries = queries
        self.cache = PositionCache(
            queries, size=lambda page: len(page[0]), max_bytes=TAG_CACHE_BYTES
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        repo = RepositoryName(name)
        n = h.parse_page_size(req.get_param("n"), MAX_PAGE)
        last = req.get_param("last")

        q = self.queries

        def render() -> tuple[str, str | None, int | None]:
            if not q.repository_exists(repo):
                raise RepositoryUnknown(f"repository {repo} is not known")
            # Read first: a tag expiring while the page is built only costs a recompute.
            expiry = q.next_tag_expiry_ms(repo)
            page = falcon.Response()
            tags = _page(req, page, lambda n, last: q.tags(repo, n, last), f"/v2/{repo}/tags/list")
            return _tags_json(str(repo), tags), page.get_header("Link"), expiry

        def fresh(page: tuple[str, str | None, int | None]) -> bool:
            return page[2] is None or q.now_ms() < page[2]

        body, link, _ = self.cache.get((str(repo), n, last), render, fresh)
        if link is not None:
            resp.set_header("Link", link)
        resp.content_type = falcon.MEDIA_JSON
        resp.text = body


class CatalogResource:
    """The catalog lists only the repositories the caller may pull (Quay does the same)."""

    def __init__(
        self, queries: RegistryQueries, identity_queries: IdentityQueries, auth: RegistryAuth
    ) -> None:
        self.queries = queries
        self.identity_queries = identity_queries
        self.auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.auth.enabled:
            caller = self.auth.identify(req).identity.requester
            readable = self.identity_queries.readable_repositories

            def fetch(n: int, last: str | None) -> list[str]:
                return readable(caller, after=last, limit=n)

        else:
            fetch = self.queries.catalog
        names = _page(req, resp, fetch, "/v2/_catalog")
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"repositories": names})


class ReferrersResource:
    def __init__(self, queries: RegistryQueries) -> None:
        self.queries = queries

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        repo, subject = RepositoryName(name), Digest.parse(digest)
        artifact_type = req.get_param("artifactType")
        if artifact_type is not None:
            artifact_type = str(MediaType(artifact_type))
            resp.set_header("OCI-Filters-Applied", "artifactType")
        manifests = []
        for r in self.queries.referrers(repo, subject, artifact_type):
            descriptor: dict[str, Any] = {
                "mediaType": r.media_type,
                "digest": r.digest,
                "size": r.size,
            }
            if r.artifact_type is not None:
                descriptor["artifactType"] = r.artifact_type
            if r.annotations:
                descriptor["annotations"] = r.annotations
            manifests.append(descriptor)
        resp.content_type = OCI_INDEX
        resp.text = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
