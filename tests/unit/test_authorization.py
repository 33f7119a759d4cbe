"""The independent authorization model: one row per rule (see authorization.py)."""

from __future__ import annotations

import pytest

from cargohold.domain.authorization import (
    ANONYMOUS,
    REQUIRED_ROLE,
    Action,
    OrganizationFacts,
    RepositoryFacts,
    Requester,
    TeamFacts,
    effective_role,
    may,
    may_create_repository,
)
from cargohold.domain.identity import Principal, RepositoryRole, TeamRole, Visibility

R, W, A = RepositoryRole.READ, RepositoryRole.WRITE, RepositoryRole.ADMIN


def user(name: str, superuser: bool = False) -> Requester:
    return Requester(Principal.user(name), superuser)


ACME = OrganizationFacts(
    name="acme",
    teams={
        "owners": TeamFacts(TeamRole.ADMIN, frozenset({"alice"})),
        "admins": TeamFacts(TeamRole.ADMIN, frozenset({"dave"})),
        "creators": TeamFacts(TeamRole.CREATOR, frozenset({"erin"})),
        "devs": TeamFacts(TeamRole.MEMBER, frozenset({"bob", "erin"})),
        "qa": TeamFacts(TeamRole.MEMBER, frozenset({"bob"})),
    },
    robots=frozenset({"ci", "ro"}),
)
PRIVATE = RepositoryFacts(
    "acme",
    Visibility.PRIVATE,
    {
        Principal.team("acme", "devs"): W,
        Principal.team("acme", "qa"): R,
        Principal.user("carol"): R,
        Principal.user("erin"): A,
        Principal.robot("acme", "ci"): W,
        Principal.robot("acme", "gone"): A,  # a deleted robot's leftover grant
    },
)
PUBLIC = RepositoryFacts("acme", Visibility.PUBLIC, {Principal.robot("acme", "ci"): W})
ALICES = RepositoryFacts("alice", Visibility.PRIVATE, {Principal.user("bob"): W})

TABLE: list[
    tuple[str, Requester, RepositoryFacts, OrganizationFacts | None, RepositoryRole | None]
] = [
    ("R1 superuser, private org repo", user("root", superuser=True), PRIVATE, ACME, A),
    ("R1 superuser, someone's repo", user("root", superuser=True), ALICES, None, A),
    ("R2 own namespace", user("alice"), ALICES, None, A),
    ("R3 owners team member", user("alice"), PRIVATE, ACME, A),
    ("R3 another admin team", user("dave"), PRIVATE, ACME, A),
    ("R3 not across namespaces", user("dave"), ALICES, None, None),
    ("R4 user grant", user("carol"), PRIVATE, ACME, R),
    ("R4 user grant on a user's repo", user("bob"), ALICES, None, W),
    ("R4 beats weaker team grant", user("erin"), PRIVATE, ACME, A),
    ("R5 strongest of two team grants", user("bob"), PRIVATE, ACME, W),
    ("R5 creator team gives no repo role", user("erin"), RepositoryFacts("acme"), ACME, None),
    ("R6 robot grant", Requester(Principal.robot("acme", "ci")), PRIVATE, ACME, W),
    ("R6 robot without grant", Requester(Principal.robot("acme", "ro")), PRIVATE, ACME, None),
    ("R6 deleted robot", Requester(Principal.robot("acme", "gone")), PRIVATE, ACME, None),
    (
        "R6 no robot outside an organisation",
        Requester(Principal.robot("alice", "ci")),
        RepositoryFacts("alice", grants={Principal.robot("alice", "ci"): W}),
        None,
        None,
    ),
    ("R7 anonymous, public", ANONYMOUS, PUBLIC, ACME, R),
    ("R7 anonymous, private", ANONYMOUS, PRIVATE, ACME, None),
    ("R7 stranger, public", user("zed"), PUBLIC, ACME, R),
    ("R7 robot, public, plus grant", Requester(Principal.robot("acme", "ci")), PUBLIC, ACME, W),
    ("R7 foreign robot, public", Requester(Principal.robot("other", "ci")), PUBLIC, ACME, R),
    ("nothing: stranger, private", user("zed"), PRIVATE, ACME, None),
    ("nothing: org member without grant", user("dave2"), PRIVATE, ACME, None),
]


@pytest.mark.parametrize(
    ("caller", "repository", "organization", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_effective_role(
    caller: Requester,
    repository: RepositoryFacts,
    organization: OrganizationFacts | None,
    expected: RepositoryRole | None,
) -> None:
    assert effective_role(caller, repository, organization) is expected


def test_actions_need_quays_roles() -> None:
    assert REQUIRED_ROLE == {
        Action.PULL: R,
        Action.PUSH: W,
        Action.DELETE_TAG: W,
        Action.DELETE_REPOSITORY: A,
        Action.ADMIN: A,
    }


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (None, set()),
        (R, {Action.PULL}),
        (W, {Action.PULL, Action.PUSH, Action.DELETE_TAG}),
        (A, set(Action)),
    ],
)
def test_may_follows_the_role(role: RepositoryRole | None, allowed: set[Action]) -> None:
    grants = {} if role is None else {Principal.user("carol"): role}
    repo = RepositoryFacts("acme", Visibility.PRIVATE, grants)
    assert {a for a in Action if may(user("carol"), a, repo, ACME)} == allowed


@pytest.mark.parametrize(
    ("caller", "namespace", "organization", "expected"),
    [
        (user("root", superuser=True), "acme", ACME, True),  # C1
        (user("root", superuser=True), "alice", None, True),  # C1
        (user("alice"), "alice", None, True),  # C2
        (user("bob"), "alice", None, False),
        (user("alice"), "acme", ACME, True),  # C3 admin team
        (user("erin"), "acme", ACME, True),  # C3 creator team
        (user("bob"), "acme", ACME, False),  # member teams only
        (user("zed"), "acme", ACME, False),
        (Requester(Principal.robot("acme", "ci")), "acme", ACME, False),
        (ANONYMOUS, "acme", ACME, False),
    ],
)
def test_may_create_repository(
    caller: Requester, namespace: str, organization: OrganizationFacts | None, expected: bool
) -> None:
    assert may_create_repository(caller, namespace, organization) is expected


def test_facts_of_another_organisation_are_refused() -> None:
    with pytest.raises(ValueError, match="acme"):
        effective_role(user("bob"), ALICES, ACME)
    with pytest.raises(ValueError, match="acme"):
        may_create_repository(user("bob"), "alice", ACME)


def test_teams_and_non_users_cannot_be_callers_or_superusers() -> None:
    with pytest.raises(ValueError):
        Requester(Principal.team("acme", "devs"))
    with pytest.raises(ValueError):
        Requester(Principal.robot("acme", "ci"), superuser=True)
    with pytest.raises(ValueError):
        Requester(None, superuser=True)
