"""A site's log as its geo peers read it: ``GET /replication/v1/log`` and the page format
(``replay/geo_feed.py``), on the embedded default through falcon's test client."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import falcon
import falcon.testing
import pytest

from cargohold.adapters.eventstore import LogReader, plain_state
from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, bootstrap, ensure_admin
from cargohold.config import ConfigError, load_settings
from cargohold.http.app import create_app
from cargohold.http.replication import ReplicationLogResource
from cargohold.replay.geo_feed import MEDIA_TYPE, FeedError, read_page, write_page
from tests.unit.api_v1.support import create_repository

TOKEN = "peer-token-of-the-tests-0123456789"


def _container(tmp_path: Path, **overrides: object) -> Container:
    settings = load_settings(
        environ={}, overrides={"data_dir": tmp_path / "data", "admin_password": "pw", **overrides}
    )
    c = bootstrap(settings, hasher=Argon2PasswordHasher.cheap())
    ensure_admin(c)
    return c


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = _container(tmp_path, peer_token=TOKEN)
    try:
        for i in range(30):
            create_repository(c, f"admin/r{i:02d}")
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(container))


def _get(client: falcon.testing.TestClient, **params: object) -> falcon.testing.Result:
    return client.simulate_get(
        "/replication/v1/log",
        params={k: str(v) for k, v in params.items()},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def test_the_log_is_served_in_pages_that_resume_where_they_stopped(
    container: Container, client: falcon.testing.TestClient
) -> None:
    reader = LogReader(container.log)
    head = reader.head()
    expected = [(position, event) for position, event in reader.read(0, head + 1)]
    seen: list[int] = []
    after = 0
    while True:
        r = _get(client, after=after, limit=7)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == MEDIA_TYPE
        page = read_page(r.content)
        assert page.site_id == container.site_id and page.head == head
        assert page.after == after and len(page.events) <= 7
        if not page.events:
            assert page.through == after
            break
        seen.extend(e.position for e in page.events)
        after = page.through
    assert seen == [p for p, _ in expected]
    # Each event is the stored one, site-neutral: this site's mapper reads it back.
    first = read_page(_get(client, after=0, limit=1).content).events[0]
    position, event = expected[0]
    assert first.position == position
    assert first.originator_id == event.originator_id and first.version == event.originator_version
    stored = container.log.recorder.select_notifications(start=0, limit=1)[0]
    assert first.topic == stored.topic
    assert first.state == plain_state(container.log.mapper, stored.state)
    assert isinstance(container.log.mapper.transcoder.decode(first.state), dict)


def test_only_a_peer_with_the_token_reads_the_log(
    container: Container, client: falcon.testing.TestClient, tmp_path: Path
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.simulate_get("/replication/v1/log", headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json["title"] == "invalid_token" and "event" not in r.text
    for params in ({"after": "-1"}, {"limit": "0"}, {"limit": "10001"}, {"after": "x"}):
        r = client.simulate_get(
            "/replication/v1/log", params=params, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code == 400 and r.json["title"] == "invalid_request", r.text
    # Without a peer token the log is served to no one.
    other = _container(tmp_path / "other")
    try:
        r = falcon.testing.TestClient(create_app(other)).simulate_get(
            "/replication/v1/log", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert r.status_code == 404
    finally:
        other.close()


def test_a_page_is_gzipped_when_asked_and_bounded_in_bytes(
    container: Container, client: falcon.testing.TestClient
) -> None:
    r = client.simulate_get(
        "/replication/v1/log",
        headers={"Authorization": f"Bearer {TOKEN}", "Accept-Encoding": "gzip"},
    )
    assert r.headers["content-encoding"] == "gzip"
    page = read_page(gzip.decompress(r.content))
    assert len(page.events) == LogReader(container.log).head()
    small = read_page(write_page(container.log, container.site_id, 0, max_bytes=1))
    assert len(small.events) == 1  # at least one event, whatever the bound


def test_a_damaged_or_truncated_page_is_refused(container: Container) -> None:
    data = write_page(container.log, container.site_id, 0, limit=5)
    with pytest.raises(FeedError, match=r"trailer|checksum"):
        read_page(data[:-20])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    with pytest.raises(FeedError):
        read_page(bytes(flipped))
    with pytest.raises(FeedError, match="not a log page"):
        read_page(b"\x93\x01\x02\x03" * 4)


def test_a_peer_token_is_long_and_never_shown() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        load_settings(environ={"CARGOHOLD_PEER_TOKEN": "short"})
    s = load_settings(environ={"CARGOHOLD_PEER_TOKEN": TOKEN})
    assert s.peer_token == TOKEN and TOKEN not in repr(s)


def test_a_log_that_cannot_be_read_is_a_503_not_a_500() -> None:
    class Broken:
        media_type, default_limit, max_limit = "x/y", 10, 100

        def page(self, after: int, limit: int) -> bytes:
            raise OSError("disk gone")

    app = falcon.App()
    app.add_route("/replication/v1/log", ReplicationLogResource(Broken(), TOKEN))
    r = falcon.testing.TestClient(app).simulate_get(
        "/replication/v1/log", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 503 and r.json["title"] == "service_unavailable"
    assert "disk gone" not in r.text
