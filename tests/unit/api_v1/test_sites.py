"""/api/v1/superuser/sites: this site and its geo peers, for superusers only."""

from __future__ import annotations

import falcon.testing

from cargohold.bootstrap import Container
from tests.unit.api_v1.support import assert_error, basic


def test_sites_shows_this_site_to_a_superuser(
    client: falcon.testing.TestClient, container: Container
) -> None:
    r = client.simulate_get("/api/v1/superuser/sites", headers=basic("admin"))
    assert r.status_code == 200
    site = r.json["site"]
    assert site["site_id"] == str(container.site_id)
    assert site["position"] == container.log.recorder.max_notification_id()
    assert site["views_position"] == container.runner.position()
    assert r.json["peers"] == []  # none configured


def test_sites_is_for_superusers(client: falcon.testing.TestClient) -> None:
    assert_error(client.simulate_get("/api/v1/superuser/sites"), 401, "invalid_token")
    r = client.simulate_get("/api/v1/superuser/sites", headers=basic("alice"))
    assert_error(r, 403, "insufficient_scope")
