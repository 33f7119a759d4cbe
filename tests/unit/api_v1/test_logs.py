"""The audit log over /api/v1 (QUAY-API.md section 10): who may read which logs, the
filters, pages, aggregates, the streamed export, and pulls and logins in the log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import falcon.testing
import pytest

from cargohold.bootstrap import Container
from cargohold.domain.identity import AccountName, ApiScope
from tests.unit.api_v1.support import (
    SYSTEM,
    api_token,
    assert_error,
    basic,
    push_image,
    send_json,
)

REPO = "/api/v1/repository/acme/web"


@pytest.fixture
def acme(container: Container, client: falcon.testing.TestClient) -> str:
    """An organisation ``acme`` (alice owns it) with ``acme/web`` pushed by alice."""
    container.identity.create_organization(AccountName("acme"), AccountName("alice"), SYSTEM)
    digest = push_image(client, "acme/web", basic("alice"), tags=("v1", "v2"))
    return digest


def kinds(body: dict[str, object]) -> list[str]:
    logs = body["logs"]
    assert isinstance(logs, list)
    return [entry["kind"] for entry in logs]


def test_repository_logs_show_the_push_newest_first(
    acme: str, container: Container, client: falcon.testing.TestClient
) -> None:
    r = client.simulate_get(REPO + "/logs", headers=basic("alice"))
    assert r.status_code == 200, r.text
    body = r.json
    assert set(body) == {"start_time", "end_time", "logs"}  # one page: no next_page
    got = kinds(body)
    assert got[:2] == ["create_tag", "create_tag"]
    assert "push_repo" in got and got[-1] == "create_repo"
    push = next(e for e in body["logs"] if e["kind"] == "push_repo")
    assert push["metadata"]["manifest_digest"] == acme
    assert push["metadata"]["namespace"] == "acme" and push["metadata"]["repo"] == "web"
    assert push["performer"] == {"kind": "user", "name": "alice", "is_robot": False}
    assert "namespace" not in push  # only on superuser logs
    assert push["datetime"].endswith("-0000")
    assert push["site"] == str(container.site_id)  # the site the push was made at


def test_pulls_and_logins_are_logged_once_flushed(
    acme: str, container: Container, client: falcon.testing.TestClient
) -> None:
    r = client.simulate_get("/v2/acme/web/manifests/v1", headers=basic("alice"))
    assert r.status_code == 200
    r = client.simulate_get("/v2/acme/web/manifests/v1", headers=basic("alice", "wrong"))
    assert r.status_code == 401
    container.access_log.flush()
    body = client.simulate_get(REPO + "/logs", headers=basic("alice")).json
    pull = body["logs"][0]
    assert pull["kind"] == "pull_repo"
    assert pull["metadata"] == {
        "namespace": "acme",
        "repo": "web",
        "tag": "v1",
        "manifest_digest": acme,
    }
    logins = client.simulate_get(
        "/api/v1/user/logs", params={"kind": "login_success,login_failure"}, headers=basic("alice")
    ).json["logs"]
    assert {e["kind"] for e in logins} == {"login_success", "login_failure"}
    failure = next(e for e in logins if e["kind"] == "login_failure")
    assert failure["metadata"] == {
        "type": "password",
        "username": "alice",
        "reason": "invalid credentials",
    }
    assert "performer" not in failure  # nobody was authenticated
    # Never the secret, in any entry.
    assert "wrong" not in json.dumps(logins) and "alice-pw-1" not in json.dumps(logins)


def test_pages_are_twenty_newest_first_and_the_token_continues(
    acme: str, container: Container, client: falcon.testing.TestClient
) -> None:
    for _ in range(45):
        client.simulate_get("/v2/acme/web/manifests/v1", headers=basic("alice"))
    container.access_log.flush()
    seen: list[str] = []
    params: dict[str, str] = {"kind": "pull_repo"}
    pages = 0
    while True:
        body = client.simulate_get(REPO + "/logs", params=params, headers=basic("alice")).json
        pages += 1
        assert len(body["logs"]) <= 20
        seen.extend(e["datetime"] for e in body["logs"])
        if "next_page" not in body:
            break
        params = {"kind": "pull_repo", "next_page": body["next_page"]}
    assert pages == 3 and len(seen) == 45
    # The token of one listing is refused on another.
    token = client.simulate_get(
        REPO + "/logs", params={"kind": "pull_repo"}, headers=basic("alice")
    ).json["next_page"]
    r = client.simulate_get(
        "/api/v1/organization/acme/logs", params={"next_page": token}, headers=basic("alice")
    )
    assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"starttime": "2024-01-01"}, "MM/DD/YYYY"),
        ({"endtime": "13/45/2024"}, "MM/DD/YYYY"),
        ({"starttime": "01/02/2024", "endtime": "01/01/2023"}, "after"),
        ({"kind": "push_repo,no_such_kind"}, "unknown log kind"),
        ({"next_page": "!!!"}, "next_page"),
        ({"performer": "x" * 300}, "performer"),
    ],
)
def test_bad_queries_are_400_with_a_reason(
    acme: str, client: falcon.testing.TestClient, params: dict[str, str], detail: str
) -> None:
    r = client.simulate_get(REPO + "/logs", params=params, headers=basic("alice"))
    assert detail in assert_error(r, 400, "invalid_request")["detail"]


def test_the_time_range_filters_and_the_end_day_is_inclusive(
    acme: str, client: falcon.testing.TestClient
) -> None:
    today = datetime.now(UTC).strftime("%m/%d/%Y")
    last_week = (datetime.now(UTC) - timedelta(days=7)).strftime("%m/%d/%Y")
    r = client.simulate_get(
        REPO + "/logs", params={"starttime": last_week, "endtime": today}, headers=basic("alice")
    )
    assert r.status_code == 200 and kinds(r.json)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%m/%d/%Y")
    r = client.simulate_get(
        REPO + "/logs",
        params={"starttime": last_week, "endtime": yesterday},
        headers=basic("alice"),
    )
    assert r.status_code == 200 and kinds(r.json) == []


def test_who_may_read_which_logs(
    acme: str, container: Container, client: falcon.testing.TestClient
) -> None:
    # bob is nobody in acme: no repository, organisation or superuser logs.
    for path in (REPO + "/logs", "/api/v1/organization/acme/logs", "/api/v1/superuser/logs"):
        assert_error(client.simulate_get(path, headers=basic("bob")), 403, "insufficient_scope")
        assert_error(client.simulate_get(path), 401, "invalid_token")
    # A token without the admin scopes is refused; with them it reads.
    read_only = api_token(container, "alice", ApiScope.REPO_READ)
    assert client.simulate_get(REPO + "/logs", headers=read_only).status_code == 403
    admin = api_token(container, "alice", ApiScope.REPO_ADMIN, ApiScope.ORG_ADMIN)
    assert client.simulate_get(REPO + "/logs", headers=admin).status_code == 200
    assert client.simulate_get("/api/v1/organization/acme/logs", headers=admin).status_code == 200
    assert client.simulate_get("/api/v1/user/logs", headers=admin).status_code == 403
    # The superuser sees everything, with each entry's namespace.
    body = client.simulate_get("/api/v1/superuser/logs", headers=basic("admin")).json
    named = [e for e in body["logs"] if e["kind"] == "org_create"]
    assert named and named[0]["namespace"] == {"kind": "org", "name": "acme"}


def test_org_logs_filter_by_performer(acme: str, client: falcon.testing.TestClient) -> None:
    r = client.simulate_get(
        "/api/v1/organization/acme/logs", params={"performer": "alice"}, headers=basic("alice")
    )
    assert r.status_code == 200
    names = {e["performer"]["name"] for e in r.json["logs"]}
    assert names == {"alice"}
    r = client.simulate_get(
        "/api/v1/organization/acme/logs", params={"performer": "nobody"}, headers=basic("alice")
    )
    assert r.json["logs"] == []


def test_aggregates_count_per_kind_per_day(acme: str, client: falcon.testing.TestClient) -> None:
    r = client.simulate_get(REPO + "/aggregatelogs", headers=basic("alice"))
    assert r.status_code == 200, r.text
    counts = {a["kind"]: a["count"] for a in r.json["aggregated"]}
    assert counts["create_tag"] == 2 and counts["create_repo"] == 1
    assert counts["push_repo"] == 1
    day = r.json["aggregated"][0]["datetime"]
    assert day.endswith("00:00:00 -0000")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_export_streams_json_lines_with_every_field(
    acme: str, container: Container, client: falcon.testing.TestClient, method: str
) -> None:
    r = send_json(client, method, "/api/v1/organization/acme/exportlogs", headers=basic("alice"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert {"org_create", "create_repo", "push_repo"} <= {e["kind"] for e in lines}
    first = lines[0]
    assert set(first) == {
        "source",
        "position",
        "kind",
        "time",
        "namespace",
        "repository",
        "performer",
        "ip",
        "request_id",
        "metadata",
        "site",
    }
    assert {e["site"] for e in lines} == {str(container.site_id)}  # all made here
    positions = [e["position"] for e in lines if e["source"] == "log"]
    assert positions == sorted(positions, reverse=True)


def test_a_method_the_logs_lack_is_405(acme: str, client: falcon.testing.TestClient) -> None:
    r = client.simulate_post(REPO + "/logs", headers=basic("alice"))
    assert_error(r, 405, "method_not_allowed")
