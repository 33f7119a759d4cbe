"""Account, Organization and NamespaceClaim: given/when/then on their events."""

from __future__ import annotations

import dataclasses
from functools import reduce
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate

from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.context import EventContext
from cargohold.domain.errors import (
    CredentialInvalid,
    DefaultPermissionUnknown,
    EmailInvalid,
    MemberUnknown,
    OwnersTeamProtected,
    PermissionInvalid,
    RobotExists,
    RobotUnknown,
    TeamExists,
    TeamUnknown,
)
from cargohold.domain.identity import (
    AccountName,
    NamespaceKind,
    Principal,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
)
from cargohold.domain.values import Actor, ActorKind, HLCTimestamp

SITE = UUID("5c1a7e00-0000-4000-8000-000000000001")
CTX = EventContext(Actor(ActorKind.USER, "alice"), SITE, HLCTimestamp(1000, 0), "req-1")
CTX2 = EventContext(Actor(ActorKind.USER, "root"), SITE, HLCTimestamp(2000, 1), "req-2")
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}
_CONTEXT = {"actor", "site_id", "hlc", "request_id", "client_address"}

ALICE = AccountName("alice")
BOB = AccountName("bob")
CAROL = AccountName("carol")
ACME = AccountName("acme")
OWNERS = TeamName("owners")
DEVS = TeamName("devs")
CI = RobotShortName("ci")


def then(aggregate: Aggregate) -> list[tuple[str, dict[str, Any]]]:
    """The events the command under test triggered: (class name, payload)."""
    out = []
    for event in aggregate.collect_events():
        fields = {
            f.name: getattr(event, f.name)
            for f in dataclasses.fields(event)  # type: ignore[arg-type]
            if f.name not in _ENVELOPE | _CONTEXT
        }
        out.append((type(event).__name__, fields))
    return out


def replay(events: Any) -> Any:
    return reduce(lambda agg, e: e.mutate(agg), events, None)


# Account


def given_account(*commands: Any) -> Account:
    account = Account.create(ALICE, "alice@example.com", "argon2-hash-1", CTX)
    for command in commands:
        command(account)
    account.collect_events()
    return account


def test_create_account() -> None:
    account = Account.create(ALICE, "alice@example.com", "argon2-hash-1", CTX)
    assert account.id == Account.create_id(SITE, ALICE)
    assert (account.name, account.email, account.password_hash, account.superuser) == (
        ALICE,
        "alice@example.com",
        "argon2-hash-1",
        False,
    )
    [created] = account.collect_events()
    assert isinstance(created, Account.Created)
    assert (created.name, created.email, created.password_hash, created.superuser) == (
        ALICE,
        "alice@example.com",
        "argon2-hash-1",
        False,
    )
    assert (created.actor, created.site_id, created.hlc, created.request_id) == (
        CTX.actor,
        SITE,
        CTX.hlc,
        "req-1",
    )


def test_create_superuser_without_email() -> None:
    admin = Account.create(AccountName("admin"), "", "h", CTX, superuser=True)
    assert admin.superuser and admin.email == ""


@pytest.mark.parametrize("email", ["alice", "a@b@c", "a b@c", "@b", "a@", "x" * 250 + "@b.io"])
def test_create_account_with_a_bad_email(email: str) -> None:
    with pytest.raises(EmailInvalid):
        Account.create(ALICE, email, "h", CTX)


def test_create_account_with_an_empty_hash() -> None:
    with pytest.raises(CredentialInvalid):
        Account.create(ALICE, "", "", CTX)


def test_account_ids_are_deterministic() -> None:
    assert Account.create_id(SITE, ALICE) == Account.create_id(SITE, AccountName("alice"))
    assert Account.create_id(SITE, ALICE) != Account.create_id(uuid4(), ALICE)
    assert Account.create_id(SITE, ALICE) != Account.create_id(SITE, BOB)
    assert Account.create_id(SITE, ACME) != Organization.create_id(SITE, ACME)
    # Pinned: the formula is in every stored stream id.
    assert Account.create_id(SITE, ALICE) == UUID("7fc7ac8d-58b9-5191-9123-fe855826ca34")
    assert Organization.create_id(SITE, ACME) == UUID("d5820a7e-74f2-5c5b-9a92-85c0711c5405")
    assert NamespaceClaim.create_id(SITE, ACME) == UUID("f72505d6-eb45-5e9c-8942-e647e2fbd9d5")


def test_change_password() -> None:
    account = given_account()
    account.change_password("argon2-hash-2", CTX2)
    assert then(account) == [("PasswordChanged", {"password_hash": "argon2-hash-2"})]
    assert account.password_hash == "argon2-hash-2"
    with pytest.raises(CredentialInvalid):
        account.change_password("", CTX2)
    assert then(account) == []


def test_grant_and_revoke_superuser_are_idempotent() -> None:
    account = given_account()
    account.revoke_superuser(CTX2)
    assert then(account) == []
    account.grant_superuser(CTX2)
    assert then(account) == [("SuperuserGranted", {})]
    assert account.superuser
    account.grant_superuser(CTX2)
    assert then(account) == []
    account.revoke_superuser(CTX2)
    assert then(account) == [("SuperuserRevoked", {})]
    assert not account.superuser


def test_account_replays_to_an_equal_aggregate() -> None:
    account = Account.create(ALICE, "", "h1", CTX)
    account.change_password("h2", CTX)
    account.grant_superuser(CTX)
    account.revoke_superuser(CTX2)
    assert replay(account.collect_events()) == account


def test_no_event_carries_a_field_named_like_a_plaintext_secret() -> None:
    for cls in (Account, Organization):
        for value in vars(cls).values():
            if isinstance(value, type) and issubclass(value, cls.Event):
                names = {f.name for f in dataclasses.fields(value)}  # type: ignore[arg-type]
                assert not names & {"password", "token", "secret"}, value


# Organization


def given_org(*commands: Any) -> Organization:
    org = Organization.create(ACME, ALICE, CTX)
    for command in commands:
        command(org)
    org.collect_events()
    return org


def team(name: TeamName, role: TeamRole = TeamRole.MEMBER) -> Any:
    return lambda org: org.create_team(name, role, CTX)


def in_team(name: TeamName, *users: AccountName) -> Any:
    def command(org: Organization) -> None:
        for user in users:
            org.add_team_member(name, user, CTX)

    return command


def robot(short: RobotShortName) -> Any:
    return lambda org: org.create_robot(short, "robot-hash-1", CTX)


def default(principal: Principal, role: RepositoryRole) -> Any:
    return lambda org: org.set_default_permission(principal, role, CTX)


def test_create_org_with_owners_team() -> None:
    org = Organization.create(ACME, ALICE, CTX)
    assert org.id == Organization.create_id(SITE, ACME)
    assert org.name == ACME
    assert org.members == {ALICE}
    assert org.team_roles == {OWNERS: TeamRole.ADMIN}
    assert org.team_members == {OWNERS: {ALICE}}
    assert org.team_descriptions == {OWNERS: ""}
    assert org.robots == {} and org.default_permissions == {}
    assert org.is_admin(ALICE) and not org.is_admin(BOB)
    assert then(org) == [("Created", {"name": ACME, "owner": ALICE})]


def test_add_member() -> None:
    org = given_org()
    org.add_member(BOB, CTX)
    assert then(org) == [("MemberAdded", {"user": BOB})]
    assert org.members == {ALICE, BOB}
    org.add_member(BOB, CTX)
    assert then(org) == []


def test_remove_member_leaves_every_team_and_default_permission_first() -> None:
    org = given_org(
        team(DEVS),
        team(TeamName("ops")),
        in_team(TeamName("ops"), BOB),
        in_team(DEVS, BOB),
        in_team(OWNERS, BOB),
        default(Principal.user("bob"), RepositoryRole.READ),
    )
    org.remove_member(BOB, CTX)
    assert then(org) == [
        ("TeamMemberRemoved", {"team": DEVS, "user": BOB}),
        ("TeamMemberRemoved", {"team": TeamName("ops"), "user": BOB}),
        ("TeamMemberRemoved", {"team": OWNERS, "user": BOB}),
        ("DefaultPermissionRemoved", {"principal": Principal.user("bob")}),
        ("MemberRemoved", {"user": BOB}),
    ]
    assert org.members == {ALICE}
    assert all(BOB not in members for members in org.team_members.values())


def test_remove_unknown_member() -> None:
    org = given_org()
    with pytest.raises(MemberUnknown, match="bob"):
        org.remove_member(BOB, CTX)
    assert then(org) == []


def test_remove_the_last_owner() -> None:
    org = given_org(team(DEVS), in_team(DEVS, ALICE))
    with pytest.raises(OwnersTeamProtected):
        org.remove_member(ALICE, CTX)
    assert then(org) == []
    assert ALICE in org.members


def test_create_team() -> None:
    org = given_org()
    org.create_team(DEVS, TeamRole.CREATOR, CTX, description="developers")
    assert then(org) == [
        ("TeamCreated", {"team": DEVS, "role": TeamRole.CREATOR, "description": "developers"})
    ]
    assert org.team_roles[DEVS] is TeamRole.CREATOR
    assert org.team_members[DEVS] == set()
    assert org.team_descriptions[DEVS] == "developers"


@pytest.mark.parametrize("name", [OWNERS, DEVS])
def test_create_an_existing_team(name: TeamName) -> None:
    org = given_org(team(DEVS))
    with pytest.raises(TeamExists):
        org.create_team(name, TeamRole.MEMBER, CTX)
    assert then(org) == []


def test_set_team_role() -> None:
    org = given_org(team(DEVS))
    org.set_team_role(DEVS, TeamRole.ADMIN, CTX)
    assert then(org) == [
        ("TeamRoleChanged", {"team": DEVS, "role": TeamRole.ADMIN, "from_role": TeamRole.MEMBER})
    ]
    org.set_team_role(DEVS, TeamRole.ADMIN, CTX)
    assert then(org) == []


def test_set_team_role_guards() -> None:
    org = given_org()
    with pytest.raises(TeamUnknown, match="devs"):
        org.set_team_role(DEVS, TeamRole.ADMIN, CTX)
    with pytest.raises(OwnersTeamProtected):
        org.set_team_role(OWNERS, TeamRole.CREATOR, CTX)
    org.set_team_role(OWNERS, TeamRole.ADMIN, CTX)  # already so: a no-op
    assert then(org) == []


def test_set_team_description() -> None:
    org = given_org(team(DEVS))
    org.set_team_description(DEVS, "the developers", CTX)
    assert then(org) == [
        ("TeamDescriptionChanged", {"team": DEVS, "description": "the developers"})
    ]
    assert org.team_descriptions[DEVS] == "the developers"
    org.set_team_description(DEVS, "the developers", CTX)
    assert then(org) == []
    with pytest.raises(TeamUnknown):
        org.set_team_description(TeamName("nobody"), "x", CTX)


def test_delete_team_and_its_default_permission() -> None:
    devs = Principal.team("acme", "devs")
    org = given_org(team(DEVS), in_team(DEVS, BOB), default(devs, RepositoryRole.WRITE))
    org.delete_team(DEVS, CTX)
    assert then(org) == [
        ("DefaultPermissionRemoved", {"principal": devs}),
        ("TeamDeleted", {"team": DEVS}),
    ]
    assert DEVS not in org.team_roles and DEVS not in org.team_members
    assert org.members == {ALICE, BOB}  # members stay in the organisation


def test_delete_team_guards() -> None:
    org = given_org()
    with pytest.raises(TeamUnknown):
        org.delete_team(DEVS, CTX)
    with pytest.raises(OwnersTeamProtected):
        org.delete_team(OWNERS, CTX)
    assert then(org) == []


def test_add_team_member_adds_an_org_member_first() -> None:
    org = given_org(team(DEVS))
    org.add_team_member(DEVS, BOB, CTX)
    assert then(org) == [
        ("MemberAdded", {"user": BOB}),
        ("TeamMemberAdded", {"team": DEVS, "user": BOB}),
    ]
    org.add_team_member(OWNERS, BOB, CTX)
    assert then(org) == [("TeamMemberAdded", {"team": OWNERS, "user": BOB})]
    assert org.teams_of(BOB) == [DEVS, OWNERS]
    assert org.is_admin(BOB)


def test_add_team_member_again_is_a_no_op() -> None:
    org = given_org(team(DEVS), in_team(DEVS, BOB))
    org.add_team_member(DEVS, BOB, CTX)
    assert then(org) == []


def test_add_member_to_an_unknown_team() -> None:
    org = given_org()
    with pytest.raises(TeamUnknown):
        org.add_team_member(DEVS, BOB, CTX)
    assert then(org) == []
    assert BOB not in org.members


def test_remove_team_member() -> None:
    org = given_org(team(DEVS), in_team(DEVS, BOB, CAROL))
    org.remove_team_member(DEVS, BOB, CTX)
    assert then(org) == [("TeamMemberRemoved", {"team": DEVS, "user": BOB})]
    assert org.team_members[DEVS] == {CAROL}
    assert BOB in org.members


def test_remove_team_member_guards() -> None:
    org = given_org(team(DEVS))
    with pytest.raises(TeamUnknown):
        org.remove_team_member(TeamName("nope"), BOB, CTX)
    with pytest.raises(MemberUnknown):
        org.remove_team_member(DEVS, BOB, CTX)
    with pytest.raises(OwnersTeamProtected):
        org.remove_team_member(OWNERS, ALICE, CTX)
    assert then(org) == []


def test_an_owner_may_leave_when_another_remains() -> None:
    org = given_org(in_team(OWNERS, BOB))
    org.remove_team_member(OWNERS, ALICE, CTX)
    assert then(org) == [("TeamMemberRemoved", {"team": OWNERS, "user": ALICE})]
    with pytest.raises(OwnersTeamProtected):
        org.remove_member(BOB, CTX)


def test_create_robot() -> None:
    org = given_org()
    org.create_robot(CI, "robot-hash-1", CTX, description="CI")
    assert then(org) == [
        ("RobotCreated", {"short_name": CI, "token_hash": "robot-hash-1", "description": "CI"})
    ]
    assert org.robots == {CI: "robot-hash-1"}
    assert org.robot_principal(CI) == Principal.robot("acme", "ci")


def test_create_robot_guards() -> None:
    org = given_org(robot(CI))
    with pytest.raises(RobotExists, match=r"acme\+ci"):
        org.create_robot(CI, "h", CTX)
    with pytest.raises(CredentialInvalid):
        org.create_robot(RobotShortName("other"), "", CTX)
    assert then(org) == []


def test_regenerate_robot_token() -> None:
    org = given_org(robot(CI))
    org.regenerate_robot_token(CI, "robot-hash-2", CTX)
    assert then(org) == [
        ("RobotTokenRegenerated", {"short_name": CI, "token_hash": "robot-hash-2"})
    ]
    assert org.robots[CI] == "robot-hash-2"
    with pytest.raises(RobotUnknown):
        org.regenerate_robot_token(RobotShortName("nope"), "h", CTX)
    with pytest.raises(CredentialInvalid):
        org.regenerate_robot_token(CI, "", CTX)
    assert then(org) == []


def test_delete_robot_and_its_default_permission() -> None:
    ci = Principal.robot("acme", "ci")
    org = given_org(robot(CI), default(ci, RepositoryRole.WRITE))
    org.delete_robot(CI, CTX)
    assert then(org) == [
        ("DefaultPermissionRemoved", {"principal": ci}),
        ("RobotDeleted", {"short_name": CI}),
    ]
    assert org.robots == {} and org.default_permissions == {}
    with pytest.raises(RobotUnknown):
        org.delete_robot(CI, CTX)
    assert then(org) == []


@pytest.mark.parametrize(
    "principal",
    [Principal.user("carol"), Principal.team("acme", "devs"), Principal.robot("acme", "ci")],
    ids=str,
)
def test_set_default_permission(principal: Principal) -> None:
    org = given_org(team(DEVS), robot(CI))
    org.set_default_permission(principal, RepositoryRole.WRITE, CTX)
    assert then(org) == [
        ("DefaultPermissionSet", {"principal": principal, "role": RepositoryRole.WRITE})
    ]
    org.set_default_permission(principal, RepositoryRole.WRITE, CTX)
    assert then(org) == []
    org.set_default_permission(principal, RepositoryRole.ADMIN, CTX)
    assert then(org) == [
        ("DefaultPermissionSet", {"principal": principal, "role": RepositoryRole.ADMIN})
    ]
    assert org.default_permissions == {principal: RepositoryRole.ADMIN}


@pytest.mark.parametrize(
    ("principal", "error"),
    [
        (Principal.team("acme", "nope"), TeamUnknown),
        (Principal.robot("acme", "nope"), RobotUnknown),
        (Principal.team("other", "devs"), PermissionInvalid),
        (Principal.robot("other", "ci"), PermissionInvalid),
    ],
    ids=str,
)
def test_set_default_permission_guards(principal: Principal, error: type[Exception]) -> None:
    org = given_org(team(DEVS), robot(CI))
    with pytest.raises(error):
        org.set_default_permission(principal, RepositoryRole.READ, CTX)
    assert then(org) == []


def test_remove_default_permission() -> None:
    carol = Principal.user("carol")
    org = given_org(default(carol, RepositoryRole.READ))
    org.remove_default_permission(carol, CTX)
    assert then(org) == [("DefaultPermissionRemoved", {"principal": carol})]
    with pytest.raises(DefaultPermissionUnknown):
        org.remove_default_permission(carol, CTX)
    assert then(org) == []


def test_every_org_event_carries_the_command_context() -> None:
    org = given_org(team(DEVS))
    org.add_team_member(DEVS, BOB, CTX2)
    org.create_robot(CI, "h", CTX2)
    for event in org.collect_events():
        assert isinstance(event, Organization.Event)
        assert (event.actor, event.site_id, event.hlc, event.request_id) == (
            CTX2.actor,
            SITE,
            CTX2.hlc,
            "req-2",
        )


def test_organization_replays_to_an_equal_aggregate() -> None:
    org = Organization.create(ACME, ALICE, CTX)
    org.create_team(DEVS, TeamRole.MEMBER, CTX, "d")
    org.add_team_member(DEVS, BOB, CTX)
    org.add_team_member(OWNERS, CAROL, CTX)
    org.set_team_role(DEVS, TeamRole.CREATOR, CTX)
    org.create_robot(CI, "h1", CTX)
    org.regenerate_robot_token(CI, "h2", CTX)
    org.set_default_permission(Principal.robot("acme", "ci"), RepositoryRole.WRITE, CTX)
    org.set_default_permission(Principal.team("acme", "devs"), RepositoryRole.READ, CTX)
    org.remove_member(BOB, CTX)
    org.remove_team_member(OWNERS, ALICE, CTX)
    org.delete_team(DEVS, CTX)
    org.add_member(BOB, CTX)
    events = org.collect_events()
    replayed = replay(events)
    assert replayed == org
    assert isinstance(replayed, Organization)
    assert replayed.version == len(events)
    assert replayed.team_members == {OWNERS: {CAROL}}
    assert replayed.members == {ALICE, BOB, CAROL}
    assert replayed.default_permissions == {Principal.robot("acme", "ci"): RepositoryRole.WRITE}


# NamespaceClaim


def test_namespace_claim() -> None:
    claim = NamespaceClaim.create(ACME, NamespaceKind.ORGANIZATION, CTX)
    assert claim.id == NamespaceClaim.create_id(SITE, ACME)
    assert (claim.name, claim.kind) == (ACME, NamespaceKind.ORGANIZATION)
    # A user and an organisation of one name claim the same id: the second save fails.
    assert NamespaceClaim.create(ACME, NamespaceKind.USER, CTX).id == claim.id
    assert then(claim) == [("Created", {"name": ACME, "kind": NamespaceKind.ORGANIZATION})]
