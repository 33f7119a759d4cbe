"""The falcon application: routes only.

``create_app`` is part of the composition root: it alone takes the collaborators out of
the container and hands each surface, by keyword, the ones it uses.
"""

from __future__ import annotations

import json

import falcon
from eventsourcing.persistence import ApplicationRecorder

from cargohold.bootstrap import Container
from cargohold.domain.errors import StorageError
from cargohold.domain.ports import BlobStore, Database
from cargohold.http import api_v1
from cargohold.http.api_v1.router import ApiV1Router
from cargohold.http.registry_v2 import routing as registry_v2
from cargohold.http.registry_v2.auth import RegistryAuth
from cargohold.http.replication import ReplicationBlobResource, ReplicationLogResource
from cargohold.projections.runner import ProjectionRunner
from cargohold.replay.geo_blobs import GeoRedirects
from cargohold.replay.geo_feed import LogPages
from cargohold.replay.geo_status import SiteStatus


class HealthResource:
    """``GET /health``: 200 when the log, the views and the blob store answer, else 503."""

    def __init__(
        self,
        views: Database,
        blobs: BlobStore,
        log: ApplicationRecorder,
        projection: ProjectionRunner,
    ) -> None:
        self.views = views
        self.blobs = blobs
        self.log = log
        self.projection = projection

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks: dict[str, str] = {}
        for name, probe in (
            ("views", self.views.check),
            ("blobs", self.blobs.check),
            ("log", self._log_head),
        ):
            try:
                probe()
                checks[name] = "ok"
            except StorageError as e:
                checks[name] = e.message
        failure = self.projection.failure
        checks["projection"] = "ok" if failure is None else f"stopped: {failure}"
        healthy = all(v == "ok" for v in checks.values())
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"status": "ok" if healthy else "unhealthy", "checks": checks})

    def _log_head(self) -> None:
        try:
            self.log.max_notification_id()
        except Exception as e:  # NOTE: any failure of the log is reported, not raised
            raise StorageError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e


def create_app(container: Container) -> falcon.App[falcon.Request, falcon.Response]:
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = False
    # NOTE: query values such as "a,b" stay one value; the spec has no list parameters.
    app.req_options.auto_parse_qs_csv = False
    app.add_route(
        "/health",
        HealthResource(
            container.views_db, container.blobs, container.log.recorder, container.runner
        ),
    )
    app.add_route(
        "/replication/v1/log",
        ReplicationLogResource(
            LogPages(container.log, container.site_id, container.settings.site_name),
            container.settings.peer_token,
        ),
    )
    app.add_route(
        "/replication/v1/blobs/{digest}",
        ReplicationBlobResource(container.blobs, container.settings.peer_token),
    )
    registry_v2.register(
        app,
        registry=container.registry,
        queries=container.queries,
        identity_queries=container.identity_queries,
        uploads=container.uploads,
        mirrors=container.mirror_queries,
        pull_through=container.pull_through,
        content_guard=container.proxy_cache_queries.guard,
        blobs=container.blobs,
        pulls=container.access_log,
        auth=registry_auth(container),
        read_only=container.read_only,
        redirects=geo_redirects(container),
    )
    api_v1.register(app, api_v1_router(container))
    return app


def registry_auth(container: Container) -> RegistryAuth:
    settings = container.settings
    return RegistryAuth(
        enabled=settings.auth,
        service=settings.auth_service,
        token_ttl=settings.token_ttl_seconds,
        signer=container.signer,
        authenticator=container.authenticator,
        authorization=container.authorization,
        repositories=container.queries,
        caches=container.proxy_cache_queries,
    )


def api_v1_router(container: Container) -> ApiV1Router:
    """The /api/v1 sink over ``container``'s collaborators."""
    return api_v1.build_router(
        authenticator=container.authenticator,
        authorization=container.authorization,
        identity_queries=container.identity_queries,
        queries=container.queries,
        audit_queries=container.audit_queries,
        identity=container.identity,
        registry=container.registry,
        mirror_service=container.mirrors,
        proxy_cache_service=container.proxy_caches,
        proxy_cache_queries=container.proxy_cache_queries,
        tag_windows=container.tag_windows,
        site_status=site_status(container),
        read_only=container.read_only,
    )


def geo_redirects(container: Container) -> GeoRedirects | None:
    """The 307s of ``geo_missing_blobs = redirect`` (None: blobs are proxied, or there
    are no peers)."""
    settings = container.settings
    if not settings.peer_urls or settings.geo_missing_blobs != "redirect":
        return None
    return GeoRedirects(
        container.blobs, container.blob_backlog, container.geo_feeds, settings.peer_token
    )


def site_status(container: Container) -> SiteStatus:
    """What the sites endpoint and ``cargohold site status`` show."""
    settings = container.settings
    return SiteStatus(
        container.log,
        container.runner,
        container.site_id,
        settings.site_name,
        settings.peer_urls,
        container.peer_links,
        container.blob_backlog,
    )
