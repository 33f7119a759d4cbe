"""Routing for ``/v2``: repository names contain ``/``, so one sink dispatches by regex.

Order matters: upload routes come before the blob route, whose ``<digest>`` would
otherwise swallow ``uploads``.
"""

from __future__ import annotations

import re
from typing import Any

import falcon

from cargohold.commands.pull_through import PullThrough
from cargohold.commands.registry import ContentGuard, RegistryService
from cargohold.commands.uploads import UploadService
from cargohold.domain.errors import (
    CredentialsInvalid,
    LoginThrottled,
    ReadOnly,
    TokenInvalid,
    UpstreamThrottled,
)
from cargohold.domain.ports import AccessRecorder, BlobStore
from cargohold.domain.values import RepositoryName
from cargohold.http.read_only import SAFE
from cargohold.http.registry_v2.auth import (
    CATALOG,
    DELETE,
    PULL,
    PUSH,
    RegistryAuth,
    TokenResource,
)
from cargohold.http.registry_v2.blobs import (
    BlobRedirects,
    BlobResource,
    UploadResource,
    UploadsResource,
)
from cargohold.http.registry_v2.errors import V2Error, render_exception
from cargohold.http.registry_v2.headers import API_VERSION
from cargohold.http.registry_v2.listing import CatalogResource, ReferrersResource, TagsResource
from cargohold.http.registry_v2.manifests import ManifestResource
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.mirrors import MirrorQueries
from cargohold.projections.queries import RegistryQueries


class V2Base:
    """``GET /v2/``: the API version check."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = "{}"

    on_head = on_get


_READ = {"GET": PULL, "HEAD": PULL}
_WRITE = {"GET": PUSH, "HEAD": PUSH, "POST": PUSH, "PUT": PUSH, "PATCH": PUSH, "DELETE": PUSH}
#: Per route: the action each method needs (see http/registry_v2/auth.py). A method the map
#: leaves out needs push (fail closed: a handler added without its entry is not open to
#: any caller); ``_OPEN`` (the token endpoint) and ``None`` (the base check) need no
#: repository right.
_OPEN: dict[str, str] = {}


#: One route: the pattern of the path after ``/v2/``, the resource, the actions it needs.
Route = tuple[re.Pattern[str], Any, dict[str, str] | None]


class V2Router:
    """Dispatches ``/v2`` over ``routes``, in order: refuses writes with the ``read_only``
    message when set, checks each route's action with ``auth``, answers failures in OCI
    form."""

    def __init__(self, auth: RegistryAuth, read_only: str | None, routes: list[Route]) -> None:
        self.auth = auth
        self.read_only = read_only
        self.routes = routes

    def __call__(self, req: falcon.Request, resp: falcon.Response, **groups: Any) -> None:
        resp.set_header(*API_VERSION)
        try:
            self._dispatch(req, resp, str(groups.get("rest") or ""))
        except Exception as error:  # NOTE: every failure is answered in OCI form
            resp.stream = None
            resp.data = None
            render_exception(req, resp, self._http_error(req, error))

    def _http_error(self, req: falcon.Request, error: Exception) -> Exception:
        """Auth failures with the headers clients need to recover from them."""
        if isinstance(error, CredentialsInvalid | TokenInvalid):
            return self.auth.unauthorized(req, error)
        if isinstance(error, LoginThrottled | UpstreamThrottled) and error.retry_after is not None:
            return V2Error(
                falcon.HTTP_429,
                "TOOMANYREQUESTS",
                error.message,
                headers={"Retry-After": str(error.retry_after)},
            )
        return error

    def _dispatch(self, req: falcon.Request, resp: falcon.Response, rest: str) -> None:
        for pattern, resource, needs in self.routes:
            m = pattern.fullmatch(rest)
            if m is None:
                continue
            handler = getattr(resource, f"on_{req.method.lower()}", None)
            if self.read_only is not None and needs is not _OPEN and req.method not in SAFE:
                raise ReadOnly(self.read_only)  # NOTE: before auth: a client learns why at once
            if handler is not None and needs is not _OPEN:
                name = m.groupdict().get("name")
                action = None if needs is None else needs.get(req.method, PUSH)
                self.auth.require(req, None if name is None else RepositoryName(name), action)
            if handler is None:
                allowed = sorted(
                    verb.upper()
                    for verb in ("get", "head", "put", "post", "patch", "delete")
                    if hasattr(resource, f"on_{verb}")
                )
                raise V2Error(
                    falcon.HTTP_405,
                    "UNSUPPORTED",
                    f"{req.method} is not supported here",
                    headers={"Allow": ", ".join(allowed)},
                )
            handler(req, resp, **m.groupdict())
            return
        raise V2Error(falcon.HTTP_404, "NOT_FOUND", f"no such endpoint: {req.path[:200]}")


def register(
    app: falcon.App[falcon.Request, falcon.Response],
    *,
    registry: RegistryService,
    queries: RegistryQueries,
    identity_queries: IdentityQueries,
    uploads: UploadService,
    mirrors: MirrorQueries,
    pull_through: PullThrough | None,
    content_guard: ContentGuard,
    blobs: BlobStore,
    pulls: AccessRecorder,
    auth: RegistryAuth,
    read_only: str | None,
    redirects: BlobRedirects | None = None,
) -> None:
    """Mount ``/v2`` on ``app``. ``pulls`` records the manifest pulls; ``read_only``,
    when set, is why every write is refused (serving a past moment); ``pull_through``
    fills the repositories of cache organisations (None: serving a past moment);
    ``content_guard`` refuses uploads that the registry would refuse for their
    namespace, before they take any bytes; ``redirects`` sends a pull of a blob a geo
    peer holds and this site does not yet to that peer (``geo_missing_blobs``)."""
    routes: list[Route] = [
        (re.compile(r"", re.DOTALL), V2Base(), None),
        (re.compile(r"auth", re.DOTALL), TokenResource(auth), _OPEN),
        (
            re.compile(r"_catalog", re.DOTALL),
            CatalogResource(queries, identity_queries, auth),
            {"GET": CATALOG},
        ),
        (
            re.compile(r"(?P<name>.+)/blobs/uploads/?", re.DOTALL),
            UploadsResource(uploads, auth, mirrors, content_guard),
            _WRITE,
        ),
        (
            re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)", re.DOTALL),
            UploadResource(uploads),
            _WRITE,
        ),
        (
            re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)", re.DOTALL),
            BlobResource(queries, blobs, registry, pull_through, redirects),
            {**_READ, "DELETE": DELETE},
        ),
        (
            re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)", re.DOTALL),
            ManifestResource(registry, queries, blobs, pulls, pull_through),
            {**_READ, "PUT": PUSH, "DELETE": DELETE},
        ),
        (re.compile(r"(?P<name>.+)/tags/list", re.DOTALL), TagsResource(queries), _READ),
        (
            re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)", re.DOTALL),
            ReferrersResource(queries),
            _READ,
        ),
    ]
    # NOTE: DOTALL and \Z, so a percent-encoded line break in a name still reaches the
    # router (and gets an OCI answer) instead of falling through to falcon's 404.
    app.add_sink(
        V2Router(auth, read_only, routes),
        prefix=re.compile(r"^/v2(?:/(?P<rest>.*))?\Z", re.DOTALL),
    )
