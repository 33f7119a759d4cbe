"""Repository grants and visibility: events in the log, rows in the views, on both backends."""

from __future__ import annotations

import pytest

from cargohold.bootstrap import Container
from cargohold.domain.access import Principal, RepositoryRole, Visibility
from cargohold.domain.errors import PermissionInvalid, PermissionUnknown, RepositoryUnknown
from cargohold.domain.values import RepositoryName
from cargohold.replay.views import rebuild, verify
from tests.factories import ALICE, push_image

NAME = RepositoryName("acme/app")


def test_grants_revocations_and_visibility_reach_the_views(container: Container) -> None:
    push_image(container, "acme/app", "v1")
    q, r = container.queries, container.registry
    assert q.visibility(NAME) == "private"
    r.grant(NAME, Principal.user("bob"), RepositoryRole.READ, ALICE)
    r.grant(NAME, Principal.team("acme", "devs"), RepositoryRole.WRITE, ALICE)
    r.grant(NAME, Principal.robot("acme", "builder"), RepositoryRole.WRITE, ALICE)
    r.grant(NAME, Principal.user("bob"), RepositoryRole.ADMIN, ALICE)  # a change
    r.set_visibility(NAME, Visibility.PUBLIC, ALICE)
    assert q.permissions(NAME) == [
        ("robot", "acme+builder", "write"),
        ("team", "acme/devs", "write"),
        ("user", "bob", "admin"),
    ]
    assert q.visibility(NAME) == "public"
    r.revoke(NAME, Principal.team("acme", "devs"), ALICE)
    r.set_visibility(NAME, Visibility.PRIVATE, ALICE)
    assert [p[1] for p in q.permissions(NAME)] == ["acme+builder", "bob"]
    assert q.visibility(NAME) == "private"
    assert verify(container, quiet=True).differences == ()
    rebuild(container, quiet=True)
    assert q.permissions(NAME)[1] == ("user", "bob", "admin")


def test_access_commands_refuse_what_the_domain_refuses(container: Container) -> None:
    push_image(container, "acme/app", "v1")
    r = container.registry
    with pytest.raises(PermissionUnknown):
        r.revoke(NAME, Principal.user("nobody"), ALICE)
    with pytest.raises(PermissionInvalid):
        r.grant(NAME, Principal.team("other", "devs"), RepositoryRole.READ, ALICE)
    with pytest.raises(RepositoryUnknown):
        r.set_visibility(RepositoryName("no/such"), Visibility.PUBLIC, ALICE)
    assert container.queries.permissions(NAME) == []
