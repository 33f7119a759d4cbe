"""``GET /api/v1/superuser/sites`` (superusers): this site and its geo peers, with each
peer's state, the position shipped, the lag in events and seconds (no Quay equivalent:
Quay's sites share one database). The body is ``replay/geo_status.py``'s."""

from __future__ import annotations

from typing import Any, Protocol

import falcon

from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.request import identity_of, send


class Sites(Protocol):
    def status(self) -> dict[str, Any]: ...


class SitesResource:
    def __init__(self, guard: Guard, sites: Sites) -> None:
        self.guard = guard
        self.sites = sites

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard.superuser(identity_of(req))
        send(resp, self.sites.status())
