"""Pull-through cache organisations (Quay's ``endpoints/api/organization.py``,
``OrganizationProxyCacheConfig`` and ``ProxyCacheConfigValidation``).

- ``GET /organization/{org}/proxycache`` (members) -> 200 ``{upstream_registry,
  expiration_s, insecure}`` as Quay, plus ours: ``upstream_registry_username`` (never the
  password) and ``status`` (``upstream`` "ok" or "failing", ``last_error``,
  ``failing_since``). Not a cache -> Quay's empty ``upstream_registry`` (clients test it),
  with ``expiration_s`` and ``insecure`` null rather than Quay's empty strings.
- ``POST .../proxycache`` (admins) ``{upstream_registry, upstream_registry_username,
  upstream_registry_password, expiration_s, insecure}`` -> 201 ``"Created"``; one there
  already -> 409 (Quay: 400).
- ``DELETE .../proxycache`` (admins) -> 204 (Quay: 201 ``"Deleted"``); none -> 404.
- ``POST .../validateproxycache`` (admins), the same body -> 202 ``"Valid"`` (the
  upstream accepted the credentials, or is open) or ``"Anonymous"`` (it wants a login and
  none was given); a failed login or an unreachable upstream -> 400 with the reason.
"""

from __future__ import annotations

from typing import Any

import falcon

from cargohold.commands.proxy_caches import ProxyCacheInput, ProxyCacheService
from cargohold.domain.proxy_cache import DEFAULT_EXPIRATION_S, MAX_EXPIRATION_S, ProxyCacheExists
from cargohold.http.api_v1.errors import ApiError
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.mirrors import format_date
from cargohold.http.api_v1.request import Body, caller_of, identity_of, no_content, read_body, send
from cargohold.projections.proxy_caches import ProxyCacheQueries


def _input(body: Body) -> ProxyCacheInput:
    expiration = body.optional_int("expiration_s", minimum=1, maximum=MAX_EXPIRATION_S)
    return ProxyCacheInput(
        upstream_registry=body.text("upstream_registry", max_length=1024),
        username=body.optional_text("upstream_registry_username") or None,
        password=body.optional_text("upstream_registry_password", max_length=4096) or None,
        expiration_s=DEFAULT_EXPIRATION_S if expiration is None else expiration,
        insecure=bool(body.optional_bool("insecure")),
    )


class ProxyCacheResource:
    """``/organization/{org}/proxycache``."""

    def __init__(self, guard: Guard, caches: ProxyCacheService, views: ProxyCacheQueries) -> None:
        self.guard = guard
        self.caches = caches
        self.views = views

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_member(identity_of(req), org)
        row = self.views.cache(name)
        if row is None:
            send(resp, {"upstream_registry": "", "expiration_s": None, "insecure": None})
            return
        payload: dict[str, Any] = {
            "upstream_registry": row.upstream_registry,
            "expiration_s": row.expiration_s,
            "insecure": row.insecure,
            "upstream_registry_username": row.username,
            "status": {
                "upstream": "failing" if row.failing else "ok",
                "last_error": row.failing,
                "failing_since": format_date(row.failing_since_ms),
            },
        }
        send(resp, payload)

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        given = _input(read_body(req))
        try:
            self.caches.configure(name, given, caller_of(req))
        except ProxyCacheExists as e:
            raise ApiError(409, "conflict", str(e)) from None
        send(resp, "Created", 201)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        self.caches.remove(name, caller_of(req))
        no_content(resp)


class ValidateProxyCacheResource:
    """``POST /organization/{org}/validateproxycache``."""

    def __init__(self, guard: Guard, caches: ProxyCacheService) -> None:
        self.guard = guard
        self.caches = caches

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        name = self.guard.org_admin(identity_of(req), org)
        send(resp, self.caches.validate(name, _input(read_body(req))), 202)
