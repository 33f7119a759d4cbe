"""The falcon application: routes only. Collaborators come from the container."""

from __future__ import annotations

import json

import falcon

from cargohold.bootstrap import Container
from cargohold.domain.errors import StorageError
from cargohold.http.api_v1 import register as register_api_v1
from cargohold.http.registry_v2.auth import RegistryAuth
from cargohold.http.registry_v2.routing import register as register_v2


class HealthResource:
    """``GET /health``: 200 when the log, the views and the blob store answer, else 503."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks: dict[str, str] = {}
        for name, probe in (
            ("views", self.container.views_db.check),
            ("blobs", self.container.blobs.check),
            ("log", self._log_head),
        ):
            try:
                probe()
                checks[name] = "ok"
            except StorageError as e:
                checks[name] = e.message
        failure = self.container.runner.failure
        checks["projection"] = "ok" if failure is None else f"stopped: {failure}"
        healthy = all(v == "ok" for v in checks.values())
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"status": "ok" if healthy else "unhealthy", "checks": checks})

    def _log_head(self) -> None:
        try:
            self.container.log.recorder.max_notification_id()
        except Exception as e:  # NOTE: any failure of the log is reported, not raised
            raise StorageError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e


def create_app(container: Container) -> falcon.App[falcon.Request, falcon.Response]:
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = False
    # NOTE: query values such as "a,b" stay one value; the spec has no list parameters.
    app.req_options.auto_parse_qs_csv = False
    app.add_route("/health", HealthResource(container))
    register_v2(app, container, registry_auth(container))
    register_api_v1(app, container)
    return app


def registry_auth(container: Container) -> RegistryAuth:
    settings = container.settings
    return RegistryAuth(
        enabled=settings.auth,
        service=settings.auth_service,
        token_ttl=settings.token_ttl_seconds,
        signer=container.signer,
        authenticator=container.authenticator,
        access=container.authorization,
        repositories=container.queries,
    )
