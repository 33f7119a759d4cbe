"""Access value types (grammars, roles, principals) and the Repository's access methods."""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given

from cargohold.domain.context import EventContext
from cargohold.domain.errors import (
    AccountNameInvalid,
    InvalidInput,
    PermissionInvalid,
    PermissionUnknown,
    RobotNameInvalid,
    TeamNameInvalid,
)
from cargohold.domain.identity import (
    AccountName,
    Principal,
    PrincipalKind,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
    Visibility,
)
from cargohold.domain.repository import Repository
from cargohold.domain.values import Actor, ActorKind, HLCTimestamp, RepositoryName
from tests import strategies as s

SITE = UUID("5c1a7e00-0000-4000-8000-000000000001")
CTX = EventContext(Actor(ActorKind.USER, "alice"), SITE, HLCTimestamp(1000, 0), "req-1")
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}
_CONTEXT = {"actor", "site_id", "hlc", "request_id", "client_address"}

# Grammars


@pytest.mark.parametrize(
    "name", ["ab", "alice", "acme", "a.b", "a_b", "a-b", "my.org-2_x", "00", "a" * 255]
)
def test_valid_account_and_team_names(name: str) -> None:
    assert AccountName(name) == name
    assert TeamName(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a",  # too short (2..255)
        "a" * 256,
        "Alice",
        "-ab",
        "ab-",
        "a..b",
        "a._b",
        "a/b",
        "a+b",
        "a b",
        "ä1",
        ".ab",
    ],
)
def test_invalid_account_and_team_names(name: str) -> None:
    with pytest.raises(AccountNameInvalid):
        AccountName(name)
    with pytest.raises(TeamNameInvalid):
        TeamName(name)


@pytest.mark.parametrize("name", ["ab", "builder", "ci_bot", "b2", "a" + "b" * 254])
def test_valid_robot_short_names(name: str) -> None:
    assert RobotShortName(name) == name


@pytest.mark.parametrize(
    "name", ["", "a", "2bot", "_bot", "bot-1", "bot.1", "Bot", "a+b", "a/b", "a" * 256]
)
def test_invalid_robot_short_names(name: str) -> None:
    with pytest.raises(RobotNameInvalid):
        RobotShortName(name)


def test_grammar_errors_are_invalid_input_and_reject_non_strings() -> None:
    for cls in (AccountName, TeamName, RobotShortName):
        with pytest.raises(InvalidInput):
            cls(3)  # type: ignore[arg-type]


def test_name_reprs() -> None:
    assert repr(AccountName("acme")) == "AccountName('acme')"
    assert repr(TeamName("owners")) == "TeamName('owners')"
    assert repr(RobotShortName("ci")) == "RobotShortName('ci')"


# Roles


def test_repository_roles_are_ordered() -> None:
    assert RepositoryRole.READ < RepositoryRole.WRITE < RepositoryRole.ADMIN
    assert RepositoryRole.ADMIN >= RepositoryRole.ADMIN > RepositoryRole.READ
    assert RepositoryRole.READ <= RepositoryRole.READ
    assert max([RepositoryRole.WRITE, RepositoryRole.ADMIN, RepositoryRole.READ]) is (
        RepositoryRole.ADMIN
    )
    assert [r.value for r in sorted(RepositoryRole, reverse=True)] == ["admin", "write", "read"]


def test_team_roles_are_ordered() -> None:
    assert TeamRole.MEMBER < TeamRole.CREATOR < TeamRole.ADMIN


def test_roles_of_different_kinds_do_not_compare() -> None:
    with pytest.raises(TypeError):
        assert RepositoryRole.READ < TeamRole.ADMIN  # type: ignore[operator]


def test_role_values_are_quays() -> None:
    assert [r.value for r in RepositoryRole] == ["read", "write", "admin"]
    assert [r.value for r in TeamRole] == ["member", "creator", "admin"]
    assert [v.value for v in Visibility] == ["public", "private"]


# Principals


def test_principal_forms() -> None:
    alice = Principal.user("alice")
    owners = Principal.team("acme", "owners")
    builder = Principal.robot("acme", "builder")
    assert (alice.kind, alice.name, alice.namespace, alice.short_name) == (
        PrincipalKind.USER,
        "alice",
        "alice",
        "alice",
    )
    assert (owners.kind, owners.name, owners.namespace, owners.short_name) == (
        PrincipalKind.TEAM,
        "acme/owners",
        "acme",
        "owners",
    )
    assert (builder.kind, builder.name, builder.namespace, builder.short_name) == (
        PrincipalKind.ROBOT,
        "acme+builder",
        "acme",
        "builder",
    )
    assert str(builder) == "robot:acme+builder"
    assert Principal.user("ab") != Principal(PrincipalKind.TEAM, "ab")
    assert len({alice, Principal.user("alice")}) == 1


def test_principal_parse() -> None:
    assert Principal.parse(PrincipalKind.USER, "alice") == Principal.user("alice")
    assert Principal.parse(PrincipalKind.TEAM, "acme/owners") == Principal.team("acme", "owners")
    assert Principal.parse(PrincipalKind.ROBOT, "acme+ci") == Principal.robot("acme", "ci")


@pytest.mark.parametrize(
    ("kind", "name", "error"),
    [
        (PrincipalKind.USER, "acme+ci", AccountNameInvalid),
        (PrincipalKind.USER, "A", AccountNameInvalid),
        (PrincipalKind.TEAM, "owners", TeamNameInvalid),
        (PrincipalKind.TEAM, "acme/Owners", TeamNameInvalid),
        (PrincipalKind.TEAM, "x/owners", AccountNameInvalid),
        (PrincipalKind.TEAM, "acme/a/b", TeamNameInvalid),
        (PrincipalKind.ROBOT, "builder", RobotNameInvalid),
        (PrincipalKind.ROBOT, "acme+bu-ild", RobotNameInvalid),
        (PrincipalKind.ROBOT, "acme+a+b", RobotNameInvalid),
        (PrincipalKind.ROBOT, "a+ci", AccountNameInvalid),
    ],
)
def test_principal_parse_rejects(kind: PrincipalKind, name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        Principal.parse(kind, name)


@given(principal=s.principals())
def test_principal_parse_inverts_the_name(principal: Principal) -> None:
    assert Principal.parse(principal.kind, principal.name) == principal


# Repository permissions and visibility

NAME = RepositoryName("acme/web")
BOB = Principal.user("bob")
DEVS = Principal.team("acme", "devs")
CI = Principal.robot("acme", "ci")


def given_repo(*commands: Any) -> Repository:
    repo = Repository.create(NAME, CTX)
    for command in commands:
        command(repo)
    repo.collect_events()
    return repo


def then(repo: Repository) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for event in repo.collect_events():
        fields = {
            f.name: getattr(event, f.name)
            for f in dataclasses.fields(event)  # type: ignore[arg-type]
            if f.name not in _ENVELOPE | _CONTEXT
        }
        out.append((type(event).__name__, fields))
    return out


def granted(principal: Principal, role: RepositoryRole) -> Any:
    return lambda repo: repo.grant(principal, role, CTX)


def test_new_repository_is_private_without_grants() -> None:
    repo = given_repo()
    assert repo.visibility is Visibility.PRIVATE
    assert repo.permissions == {}


@pytest.mark.parametrize("principal", [BOB, DEVS, CI], ids=str)
def test_grant(principal: Principal) -> None:
    repo = given_repo()
    repo.grant(principal, RepositoryRole.WRITE, CTX)
    assert then(repo) == [
        (
            "PermissionGranted",
            {"principal": principal, "role": RepositoryRole.WRITE, "from_role": None},
        )
    ]
    assert repo.permissions == {principal: RepositoryRole.WRITE}


def test_grant_changes_a_role() -> None:
    repo = given_repo(granted(BOB, RepositoryRole.READ))
    repo.grant(BOB, RepositoryRole.ADMIN, CTX)
    assert then(repo) == [
        (
            "PermissionGranted",
            {"principal": BOB, "role": RepositoryRole.ADMIN, "from_role": RepositoryRole.READ},
        )
    ]
    assert repo.permissions == {BOB: RepositoryRole.ADMIN}


def test_grant_the_same_role_is_a_no_op() -> None:
    repo = given_repo(granted(BOB, RepositoryRole.READ))
    repo.grant(BOB, RepositoryRole.READ, CTX)
    assert then(repo) == []


@pytest.mark.parametrize(
    "principal",
    [
        Principal.user("acme"),  # the namespace's own user is always admin
        Principal.team("other", "devs"),
        Principal.robot("other", "ci"),
    ],
    ids=str,
)
def test_grant_and_revoke_refuse_owner_and_foreign_principals(principal: Principal) -> None:
    repo = given_repo()
    with pytest.raises(PermissionInvalid):
        repo.grant(principal, RepositoryRole.READ, CTX)
    with pytest.raises(PermissionInvalid):
        repo.revoke(principal, CTX)
    assert then(repo) == []


def test_revoke() -> None:
    repo = given_repo(granted(BOB, RepositoryRole.READ), granted(CI, RepositoryRole.WRITE))
    repo.revoke(BOB, CTX)
    assert then(repo) == [("PermissionRevoked", {"principal": BOB})]
    assert repo.permissions == {CI: RepositoryRole.WRITE}


def test_revoke_without_a_grant() -> None:
    repo = given_repo(granted(BOB, RepositoryRole.READ))
    with pytest.raises(PermissionUnknown, match="acme\\+ci"):
        repo.revoke(CI, CTX)
    assert then(repo) == []


def test_set_visibility() -> None:
    repo = given_repo()
    repo.set_visibility(Visibility.PUBLIC, CTX)
    assert then(repo) == [("VisibilityChanged", {"visibility": Visibility.PUBLIC})]
    assert repo.visibility is Visibility.PUBLIC
    repo.set_visibility(Visibility.PUBLIC, CTX)
    assert then(repo) == []
    repo.set_visibility(Visibility.PRIVATE, CTX)
    assert [name for name, _ in then(repo)] == ["VisibilityChanged"]


def test_access_events_replay_to_an_equal_repository() -> None:
    repo = Repository.create(NAME, CTX)
    repo.grant(BOB, RepositoryRole.READ, CTX)
    repo.grant(DEVS, RepositoryRole.WRITE, CTX)
    repo.grant(BOB, RepositoryRole.ADMIN, CTX)
    repo.revoke(DEVS, CTX)
    repo.set_visibility(Visibility.PUBLIC, CTX)
    events = repo.collect_events()
    replayed: Repository | None = None
    for event in events:
        replayed = event.mutate(replayed)  # type: ignore[assignment]
    assert replayed == repo
    assert replayed is not None and replayed.permissions == {BOB: RepositoryRole.ADMIN}
    assert replayed.visibility is Visibility.PUBLIC
