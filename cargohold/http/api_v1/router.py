"""One sink for ``/api/v1``: falcon's own router inside, our error table around it.

Why a sink rather than ``app.add_route``: every answer under /api/v1 (an unknown path, a
method the endpoint lacks, a bad credential, an unexpected exception) must come in the one
error body of ``errors.py``, and only there; app-wide error handlers would also catch
other surfaces' errors. The routes are ordinary falcon URI templates
(``/api/v1/repository/{namespace}/{repo}``) in a private ``CompiledRouter``.

Per request: route (404 ``not_found``, 405 ``method_not_allowed`` + ``Allow``), then
identify the caller, then the responder. A trailing slash is optional on every route
(Quay's paths end in ``/`` for collections; both spellings work).

Identification: ``Authorization: Bearer <API token>`` or ``Basic`` (a password, a robot
``org+short`` and its token, ``$token`` and an API token); none is anonymous. A header that
is malformed or does not authenticate is 401, never anonymous (Quay silently ignores a bad
bearer). Repeated failures are throttled (429 + ``Retry-After``).
"""

from __future__ import annotations

import re
from typing import Any

import falcon
from falcon.routing import CompiledRouter

from cargohold.commands.authentication import ANONYMOUS, Authenticator, Identity
from cargohold.domain.errors import ReadOnly
from cargohold.http.api_v1.errors import ApiError, render_exception
from cargohold.http.auth_headers import Basic, Bearer, address_of, credentials_of
from cargohold.http.read_only import SAFE
from cargohold.http.registry_v2.context import request_id_of

PREFIX = "/api/v1"
#: Matches the whole of every path under /api/v1 (DOTALL and \\Z: a percent-encoded line
#: break still reaches the router and gets our 404).
SINK_PATTERN = re.compile(r"^/api/v1(?:/.*)?\Z", re.DOTALL)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ApiV1Router:
    """The /api/v1 sink. ``add`` routes; ``__call__`` serves."""

    def __init__(self, authenticator: Authenticator, read_only: str | None = None) -> None:
        self.authenticator = authenticator
        self.read_only = read_only
        self._router = CompiledRouter()

    def add(self, template: str, resource: object) -> None:
        """Route ``PREFIX + template`` (no trailing slash) to ``resource``."""
        self._router.add_route(PREFIX + template.rstrip("/"), resource)

    def __call__(self, req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
        try:
            self._dispatch(req, resp)
        except Exception as error:  # NOTE: every failure is answered in the one shape
            render_exception(req, resp, error)

    def _dispatch(self, req: falcon.Request, resp: falcon.Response) -> None:
        path = req.path.rstrip("/") if req.path != "/" else req.path
        found = self._router.find(path, req)
        if found is None:
            raise ApiError(404, "not_found", f"no such API endpoint: {req.path[:200]}")
        resource, _method_map, params, _template = found
        responder = getattr(resource, f"on_{req.method.lower()}", None)
        if responder is None:
            allowed = [m for m in METHODS if hasattr(resource, f"on_{m.lower()}")]
            raise ApiError(
                405,
                "method_not_allowed",
                f"{req.method[:20]} is not supported here",
                headers={"Allow": ", ".join(allowed)},
            )
        if (
            self.read_only is not None
            and req.method not in SAFE
            and not getattr(resource, "reads_only", False)
        ):
            raise ReadOnly(self.read_only)
        req.context.api_identity = self.identify(req)
        responder(req, resp, **params)

    def identify(self, req: falcon.Request) -> Identity:
        """Who sent ``req``. Raises ``CredentialsInvalid`` and ``LoginThrottled``."""
        creds = credentials_of(req)
        if isinstance(creds, Bearer):
            return self.authenticator.bearer_api_token(
                creds.token, address_of(req), request_id_of(req)
            )
        if isinstance(creds, Basic):
            return self.authenticator.basic(
                creds.username, creds.secret, address_of(req), request_id_of(req)
            )
        return ANONYMOUS
