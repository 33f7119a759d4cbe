"""Every event records where its request came from: the client's address (issue 6)."""

from __future__ import annotations

from typing import Any

import falcon.testing

from cargohold.adapters.eventstore import LogReader
from cargohold.bootstrap import Container
from cargohold.domain.repository import Repository
from tests.fixtures.digests import sha256
from tests.unit.api_v1.support import basic


def _events_after(container: Container, position: int) -> list[Any]:
    return [e for _, e in LogReader(container.log).read(position, 1000)]


def test_api_and_registry_writes_carry_the_client_address(
    client: falcon.testing.TestClient, container: Container
) -> None:
    start = LogReader(container.log).head()
    r = client.simulate_post(
        "/api/v1/repository",
        json={"namespace": "alice", "repository": "app", "visibility": "private"},
        headers=basic("alice"),
        remote_addr="10.1.2.3",
    )
    assert r.status_code == 201, r.text
    created = _events_after(container, start)
    assert isinstance(created[0], Repository.Created)
    assert {e.client_address for e in created} == {"10.1.2.3"}

    middle = LogReader(container.log).head()
    blob = b"some layer"
    r = client.simulate_post(
        "/v2/alice/app/blobs/uploads/",
        params={"digest": sha256(blob)},
        body=blob,
        headers=basic("alice"),
        remote_addr="192.0.2.7",
    )
    assert r.status_code == 201, r.text
    linked = _events_after(container, middle)
    assert [type(e) for e in linked] == [Repository.BlobLinked]
    assert linked[0].client_address == "192.0.2.7" and linked[0].actor.name == "alice"


def test_commands_without_a_request_have_no_address(container: Container) -> None:
    seeded = _events_after(container, 0)  # the fixture's users, made by commands
    assert seeded
    assert all(e.client_address is None for e in seeded)
