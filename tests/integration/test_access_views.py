"""Access in the views, on both backends: repository grants and visibility through the
commands, and the identity views (accounts, organisations, teams, robots, default
permissions, API tokens) with ``IdentityQueries`` over them, from aggregates saved through
the log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cargohold.bootstrap import Container
from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.authorization import ANONYMOUS, Requester
from cargohold.domain.context import EventContext
from cargohold.domain.errors import PermissionInvalid, PermissionUnknown, RepositoryUnknown
from cargohold.domain.identity import (
    AccountName,
    ApiScope,
    NamespaceKind,
    Principal,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
    Visibility,
)
from cargohold.domain.repository import Repository
from cargohold.domain.values import Digest, RepositoryName
from cargohold.projections.identity_queries import TeamRow
from cargohold.projections.queries import RegistryQueries
from cargohold.projections.schema import VIEW_TABLES
from tests.factories import ALICE, push_image, settings_for
from tests.integration.identity_log import IdentityLog
from tests.operations import rebuild, verify

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


# -- identity views and IdentityQueries, from aggregates saved through the log ----------------


@pytest.fixture
def ident(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[IdentityLog]:
    log = IdentityLog(settings_for(request, backend, tmp_path / "data"))
    try:
        yield log
    finally:
        log.close()


EXPIRES = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
A, W, R = RepositoryRole.ADMIN, RepositoryRole.WRITE, RepositoryRole.READ


def _user(name: str, superuser: bool = False) -> Requester:
    return Requester(Principal.user(name), superuser)


def _robot(namespace: str, short: str) -> Requester:
    return Requester(Principal.robot(namespace, short))


def _fill(ident: IdentityLog) -> None:
    """Every identity event class, and repositories with grants, deleted and recreated."""
    ctx = ident.ctx
    alice = ident.user("alice", "alice@example.com")
    bob = ident.user("bob", "bob@example.com")
    ident.user("carol")
    dave = ident.user("dave")
    ident.user("erin")
    ident.user("root", superuser=True)
    dave.grant_superuser(ctx())
    dave.revoke_superuser(ctx())
    bob.change_password("argon2-new-hash", ctx())
    alice.issue_api_token("tok1", "hash1", (ApiScope.REPO_WRITE,), EXPIRES, ctx(), "ci")
    alice.issue_api_token("tok2", "hash2", (ApiScope.ORG_ADMIN,), EXPIRES, ctx())
    alice.issue_api_token("tok3", "hash3", (ApiScope.REPO_READ, ApiScope.USER_READ), EXPIRES, ctx())
    alice.revoke_api_token("tok2", ctx())
    ident.save(alice, bob, dave)

    acme = ident.organization("acme", "alice")
    acme.add_member(AccountName("bob"), ctx())
    acme.create_team(TeamName("devs"), TeamRole.MEMBER, ctx(), "developers")
    acme.add_team_member(TeamName("devs"), AccountName("bob"), ctx())
    acme.add_team_member(TeamName("devs"), AccountName("carol"), ctx())
    acme.create_team(TeamName("builders"), TeamRole.CREATOR, ctx())
    acme.add_team_member(TeamName("builders"), AccountName("dave"), ctx())
    acme.create_team(TeamName("admins"), TeamRole.MEMBER, ctx())
    acme.set_team_role(TeamName("admins"), TeamRole.ADMIN, ctx())
    acme.add_team_member(TeamName("admins"), AccountName("erin"), ctx())
    acme.add_team_member(TeamName("admins"), AccountName("bob"), ctx())
    acme.remove_team_member(TeamName("admins"), AccountName("bob"), ctx())
    acme.create_team(TeamName("ops"), TeamRole.ADMIN, ctx())
    acme.add_team_member(TeamName("ops"), AccountName("bob"), ctx())
    acme.set_default_permission(Principal.team("acme", "ops"), A, ctx())
    acme.delete_team(TeamName("ops"), ctx())
    acme.create_robot(RobotShortName("builder"), "rhash1", ctx(), "CI")
    acme.regenerate_robot_token(RobotShortName("builder"), "rhash2", ctx())
    acme.create_robot(RobotShortName("deployer"), "rhash3", ctx())
    acme.set_default_permission(Principal.team("acme", "devs"), W, ctx())
    acme.set_default_permission(Principal.robot("acme", "builder"), R, ctx())
    acme.set_default_permission(Principal.user("carol"), R, ctx())
    acme.set_default_permission(Principal.user("carol"), W, ctx())
    acme.set_default_permission(Principal.robot("acme", "deployer"), R, ctx())
    acme.delete_robot(RobotShortName("deployer"), ctx())
    acme.set_default_permission(Principal.user("erin"), R, ctx())
    acme.remove_default_permission(Principal.user("erin"), ctx())
    ident.save(acme)

    globex = ident.organization("globex", "bob")
    globex.add_team_member(TeamName("owners"), AccountName("carol"), ctx())
    globex.add_member(AccountName("dave"), ctx())
    globex.set_default_permission(Principal.user("dave"), R, ctx())
    globex.remove_member(AccountName("dave"), ctx())
    ident.save(globex)

    app = ident.repository("acme/app")
    app.grant(Principal.team("acme", "devs"), W, ctx())
    app.grant(Principal.robot("acme", "builder"), W, ctx())
    app.grant(Principal.robot("acme", "deployer"), A, ctx())  # a deleted robot's leftover
    app.grant(Principal.user("carol"), R, ctx())
    site = ident.repository("acme/site")
    site.set_visibility(Visibility.PUBLIC, ctx())
    tools = ident.repository("alice/tools")
    tools.grant(Principal.user("bob"), R, ctx())
    ident.repository("globex/lib")
    old = ident.repository("acme/old")
    old.link_blob(Digest.of(b"old layer"), 9, ctx())
    old.grant(Principal.user("bob"), A, ctx())
    old.set_visibility(Visibility.PUBLIC, ctx())
    old.delete(ctx())
    ident.save(app, site, tools, old)
    old.recreate(ctx())
    old.grant(Principal.user("carol"), R, ctx())
    gone = ident.repository("acme/gone")
    gone.link_blob(Digest.of(b"gone layer"), 10, ctx())
    gone.grant(Principal.user("bob"), R, ctx())
    gone.set_visibility(Visibility.PUBLIC, ctx())
    gone.delete(ctx())
    ident.save(old, gone)


def test_identity_queries_answer_from_the_views(ident: IdentityLog) -> None:
    q = ident.queries
    assert not q.has_accounts()
    _fill(ident)
    assert q.has_accounts()
    alice = q.account("alice")
    assert alice is not None and alice.created_at
    assert (alice.name, alice.email, alice.superuser) == ("alice", "alice@example.com", False)
    assert q.account("nobody") is None
    assert [(a.name, a.superuser) for a in q.accounts()] == [
        ("alice", False),
        ("bob", False),
        ("carol", False),
        ("dave", False),
        ("erin", False),
        ("root", True),
    ]
    assert [a.name for a in q.accounts(after="bob", limit=2)] == ["carol", "dave"]
    assert q.namespace_kind("alice") is NamespaceKind.USER
    assert q.namespace_kind("acme") is NamespaceKind.ORGANIZATION
    assert q.namespace_kind("ghost") is None

    assert q.organization_exists("acme") and not q.organization_exists("alice")
    assert q.organizations() == ["acme", "globex"]
    assert q.organizations(after="acme") == ["globex"]
    assert q.organizations(limit=1) == ["acme"]
    assert q.organizations_of("bob") == ["acme", "globex"]
    assert q.organizations_of("dave") == ["acme"]  # removed from globex
    assert q.org_members("acme") == ["alice", "bob", "carol", "dave", "erin"]
    assert q.org_members("globex") == ["bob", "carol"]
    assert q.teams("acme") == [
        TeamRow("acme", "admins", TeamRole.ADMIN, "", 1),
        TeamRow("acme", "builders", TeamRole.CREATOR, "", 1),
        TeamRow("acme", "devs", TeamRole.MEMBER, "developers", 2),
        TeamRow("acme", "owners", TeamRole.ADMIN, "", 1),
    ]
    assert q.team("acme", "devs") == TeamRow("acme", "devs", TeamRole.MEMBER, "developers", 2)
    assert q.team("acme", "ops") is None
    assert q.team_members("acme", "devs") == ["bob", "carol"]
    assert q.team_members("acme", "ops") == []  # deleted with its team
    assert q.team_members("acme", "admins") == ["erin"]
    assert q.teams_of("acme", "bob") == ["devs"]
    assert q.teams_of("globex", "carol") == ["owners"]

    [builder] = q.robots("acme")
    assert (builder.namespace, builder.short_name, builder.description) == ("acme", "builder", "CI")
    assert builder.full_name == "acme+builder" and builder.created_at
    assert q.robot("acme", "builder") == builder
    assert q.robot("acme", "deployer") is None
    assert q.robot_token_hash("acme", "builder") == "rhash2"
    assert q.robot_token_hash("acme", "deployer") is None
    assert q.default_permissions("acme") == [
        (Principal.robot("acme", "builder"), R),
        (Principal.team("acme", "devs"), W),
        (Principal.user("carol"), W),
    ]
    assert q.default_permissions("globex") == []

    token = q.api_token_by_hash("hash1")
    assert token is not None
    assert (token.token_id, token.owner, token.scopes, token.description) == (
        "tok1",
        "alice",
        frozenset({ApiScope.REPO_WRITE}),
        "ci",
    )
    assert token.expires_at == EXPIRES and token.expires_at.tzinfo is not None
    assert q.api_token_by_hash("hash2") is None  # revoked
    tokens = q.api_tokens_of("alice")
    assert [t.token_id for t in tokens] == ["tok1", "tok3"]
    assert tokens[1].scopes == frozenset({ApiScope.REPO_READ, ApiScope.USER_READ})
    assert q.api_tokens_of("bob") == []


def test_views_hold_no_password_hashes(ident: IdentityLog) -> None:
    _fill(ident)
    with ident.db.transaction(write=False) as c:
        for table in VIEW_TABLES:
            for row in c.execute(f"SELECT * FROM {table.name}").fetchall():
                assert not any("argon2" in str(v) for v in row), (table.name, row)


def test_grant_queries_and_deleted_repositories(ident: IdentityLog) -> None:
    _fill(ident)
    q = ident.queries
    assert q.repository_grants("acme/app") == [
        (Principal.robot("acme", "builder"), W),
        (Principal.robot("acme", "deployer"), A),
        (Principal.team("acme", "devs"), W),
        (Principal.user("carol"), R),
    ]
    assert q.repository_grants("acme/old") == [(Principal.user("carol"), R)]
    assert q.repository_grants("acme/gone") == []
    assert q.grants_of(Principal.user("carol")) == [("acme/app", R), ("acme/old", R)]
    assert q.grants_of(Principal.team("acme", "devs")) == [("acme/app", W)]
    assert q.grants_of(Principal.user("bob")) == [("alice/tools", R)]
    assert q.grants_in_namespace_for_user("acme", "carol") == ["acme/app", "acme/old"]
    assert q.grants_in_namespace_for_user("alice", "bob") == ["alice/tools"]
    assert q.grants_in_namespace_for_user("acme", "bob") == []
    assert q.grants_in_namespace_for_user("acm", "carol") == []  # a prefix is not a namespace

    registry = RegistryQueries(ident.db)
    assert registry.catalog() == ["acme/app", "acme/old", "acme/site", "alice/tools", "globex/lib"]
    assert not registry.repository_exists(RepositoryName("acme/gone"))
    assert registry.visibility(RepositoryName("acme/gone")) is None
    assert registry.visibility(RepositoryName("acme/old")) == "private"  # recreated private
    assert registry.repositories_with_blob(Digest.of(b"gone layer")) == []
    assert registry.repositories_with_blob(Digest.of(b"old layer")) == []


ROLES: list[tuple[Requester, str, RepositoryRole | None]] = [
    (ANONYMOUS, "acme/site", R),
    (ANONYMOUS, "acme/app", None),
    (ANONYMOUS, "acme/old", None),  # public before its deletion, private since
    (ANONYMOUS, "acme/gone", None),
    (_user("alice"), "acme/app", A),  # R3 owners
    (_user("alice"), "alice/tools", A),  # R2
    (_user("alice"), "alice/nothing", A),  # R2 on a repository that does not exist
    (_user("alice"), "acme/gone", A),  # R3 on a deleted repository
    (_user("alice"), "globex/lib", None),
    (_user("bob"), "acme/app", W),  # R5 devs
    (_user("bob"), "acme/site", R),  # R7
    (_user("bob"), "alice/tools", R),  # R4
    (_user("bob"), "globex/lib", A),  # R3 owners of globex
    (_user("bob"), "acme/old", None),  # his grant went with the deletion
    (_user("bob"), "acme/gone", None),
    (_user("carol"), "acme/app", W),  # R5 W beats R4 R
    (_user("carol"), "acme/old", R),  # granted after the recreation
    (_user("dave"), "acme/app", None),  # a CREATOR team gives no role by itself
    (_user("dave"), "globex/lib", None),
    (_user("erin"), "acme/app", A),  # R3 a team made ADMIN
    (_user("erin"), "acme/missing", A),
    (_user("root", superuser=True), "globex/lib", A),  # R1
    (_user("root", superuser=True), "ghost/none", A),
    (_user("root"), "globex/lib", None),  # the caller object decides, not the view
    (_robot("acme", "builder"), "acme/app", W),  # R6
    (_robot("acme", "builder"), "acme/site", R),  # R7
    (_robot("acme", "builder"), "acme/old", None),
    (_robot("acme", "deployer"), "acme/app", None),  # deleted robot, leftover grant
    (_robot("globex", "builder"), "acme/app", None),
    (_robot("globex", "builder"), "acme/site", R),
]


def test_effective_role_follows_the_rules(ident: IdentityLog) -> None:
    _fill(ident)
    got = [(c, repo, ident.queries.effective_role(c, repo)) for c, repo, _ in ROLES]
    assert got == ROLES


def test_may_create_repository_follows_the_rules(ident: IdentityLog) -> None:
    _fill(ident)
    q = ident.queries
    expected = {
        (ANONYMOUS, "acme"): False,
        (_robot("acme", "builder"), "acme"): False,
        (_user("root", superuser=True), "ghost"): True,  # C1
        (_user("alice"), "alice"): True,  # C2
        (_user("alice"), "acme"): True,  # C3 owners
        (_user("alice"), "globex"): False,
        (_user("alice"), "ghost"): False,
        (_user("dave"), "acme"): True,  # C3 creators
        (_user("dave"), "globex"): False,
        (_user("bob"), "acme"): False,  # devs are members only
        (_user("bob"), "globex"): True,
        (_user("erin"), "acme"): True,
    }
    assert {k: q.may_create_repository(*k) for k in expected} == expected


def test_readable_repositories(ident: IdentityLog) -> None:
    _fill(ident)
    q = ident.queries
    everything = ["acme/app", "acme/old", "acme/site", "alice/tools", "globex/lib"]
    assert q.readable_repositories(ANONYMOUS) == ["acme/site"]
    assert q.readable_repositories(_user("root", superuser=True)) == everything
    assert q.readable_repositories(_user("alice")) == [
        "acme/app",
        "acme/old",
        "acme/site",
        "alice/tools",
    ]
    assert q.readable_repositories(_user("bob")) == [
        "acme/app",
        "acme/site",
        "alice/tools",
        "globex/lib",
    ]
    assert q.readable_repositories(_user("carol")) == [
        "acme/app",
        "acme/old",
        "acme/site",
        "globex/lib",
    ]
    assert q.readable_repositories(_user("dave")) == ["acme/site"]
    assert q.readable_repositories(_robot("acme", "builder")) == ["acme/app", "acme/site"]
    assert q.readable_repositories(_robot("acme", "deployer")) == ["acme/site"]
    assert q.readable_repositories(_user("alice"), after="acme/old", limit=1) == ["acme/site"]
    assert q.readable_repositories(_user("bob"), namespace="acme") == ["acme/app", "acme/site"]
    assert q.readable_repositories(_user("bob"), namespace="alice") == ["alice/tools"]
    assert q.readable_repositories(_user("root", superuser=True), namespace="acm") == []


def test_identity_views_verify_and_rebuild(container: Container) -> None:
    """``replay verify``/``rebuild`` cover the identity views and repository deletion."""
    site, clock = container.site_id, container.registry.clock

    def ctx() -> EventContext:
        return EventContext(ALICE.actor, site, clock.now(), "req")

    account = Account.create(AccountName("zed"), "zed@example.com", "argon2-hash", ctx())
    account.issue_api_token("t1", "h1", (ApiScope.REPO_READ,), EXPIRES, ctx())
    org = Organization.create(AccountName("acme"), AccountName("zed"), ctx())
    org.create_team(TeamName("devs"), TeamRole.MEMBER, ctx())
    org.create_robot(RobotShortName("ci"), "rhash", ctx())
    claims = [
        NamespaceClaim.create(AccountName("zed"), NamespaceKind.USER, ctx()),
        NamespaceClaim.create(AccountName("acme"), NamespaceKind.ORGANIZATION, ctx()),
    ]
    container.log.save(account, org, *claims)
    container.runner.catch_up()
    push_image(container, "acme/app", "v1")
    push_image(container, "acme/keep", "v1")
    repo: Repository = container.log.repository.get(Repository.create_id(site, NAME))
    repo.grant(Principal.robot("acme", "ci"), RepositoryRole.WRITE, ctx())
    repo.delete(ctx())
    container.log.save(repo)
    container.runner.catch_up()

    q = container.queries
    assert q.catalog() == ["acme/keep"]
    assert q.tags(NAME) == [] and q.permissions(NAME) == []
    assert [h.action for h in q.tag_history(NAME)] == ["move"]  # the audit trail stays
    assert verify(container, quiet=True).differences == ()

    with container.views_db.transaction() as c:
        c.execute("UPDATE teams SET role = 'admin' WHERE team = 'devs'")
        c.execute("DELETE FROM api_tokens")
        c.execute("DELETE FROM deleted_repositories")
    found = {(d.table, d.side) for d in verify(container, quiet=True).differences}
    assert found == {
        ("teams", "live only"),
        ("teams", "replay only"),
        ("api_tokens", "replay only"),
        ("deleted_repositories", "replay only"),
    }
    rebuild(container, quiet=True)
    assert verify(container, quiet=True).differences == ()
    team = container.identity_queries.team("acme", "devs")
    assert team is not None and team.role is TeamRole.MEMBER

    repo = container.log.repository.get(repo.id)
    repo.recreate(ctx())  # works from the rebuilt views: the name is still known
    container.log.save(repo)
    container.runner.catch_up()
    assert q.catalog() == ["acme/app", "acme/keep"] and q.visibility(NAME) == "private"
    assert verify(container, quiet=True).differences == ()
