"""Routing for ``/v2``: repository names contain ``/``, so one sink dispatches by regex.

Order matters: upload routes come before the blob route, whose ``<digest>`` would
otherwise swallow ``uploads``.
"""

from __future__ import annotations

import re
from typing import Any

import falcon

from cargohold.bootstrap import Container
from cargohold.http.registry_v2.blobs import BlobResource, UploadResource, UploadsResource
from cargohold.http.registry_v2.errors import V2Error, render_exception
from cargohold.http.registry_v2.headers import API_VERSION
from cargohold.http.registry_v2.listing import CatalogResource, ReferrersResource, TagsResource
from cargohold.http.registry_v2.manifests import ManifestResource


class V2Base:
    """``GET /v2/``: the API version check."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = "{}"

    on_head = on_get


class V2Router:
    def __init__(self, container: Container) -> None:
        blob = BlobResource(container)
        self.routes: list[tuple[re.Pattern[str], Any]] = [
            (re.compile(r"", re.DOTALL), V2Base()),
            (re.compile(r"_catalog", re.DOTALL), CatalogResource(container)),
            (re.compile(r"(?P<name>.+)/blobs/uploads/?", re.DOTALL), UploadsResource(container)),
            (
                re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)", re.DOTALL),
                UploadResource(container),
            ),
            (re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)", re.DOTALL), blob),
            (
                re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)", re.DOTALL),
                ManifestResource(container),
            ),
            (re.compile(r"(?P<name>.+)/tags/list", re.DOTALL), TagsResource(container)),
            (
                re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)", re.DOTALL),
                ReferrersResource(container),
            ),
        ]

    def __call__(self, req: falcon.Request, resp: falcon.Response, **groups: Any) -> None:
        resp.set_header(*API_VERSION)
        try:
            self._dispatch(req, resp, str(groups.get("rest") or ""))
        except Exception as error:  # NOTE: every failure is answered in OCI form
            resp.stream = None
            resp.data = None
            render_exception(req, resp, error)

    def _dispatch(self, req: falcon.Request, resp: falcon.Response, rest: str) -> None:
        for pattern, resource in self.routes:
            m = pattern.fullmatch(rest)
            if m is None:
                continue
            handler = getattr(resource, f"on_{req.method.lower()}", None)
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


def register(app: falcon.App[falcon.Request, falcon.Response], container: Container) -> None:
    # NOTE: DOTALL and \Z, so a percent-encoded line break in a name still reaches the
    # router (and gets an OCI answer) instead of falling through to falcon's 404.
    app.add_sink(V2Router(container), prefix=re.compile(r"^/v2(?:/(?P<rest>.*))?\Z", re.DOTALL))
