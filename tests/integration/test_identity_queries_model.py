"""The views agree with the pure authorization model (issue 4's independent model).

Hypothesis draws random facts (users, some superusers; organisations with teams of random
roles and members, robots; repositories with random visibility and grants to users,
teams and robots, some deleted and recreated; then teams, robots and members removed),
builds them as real events through the log and the projection on SQLite, and compares
``IdentityQueries`` with ``cargohold.domain.authorization`` for every caller and
repository, and for every namespace: zero disagreements.

The model's facts are taken from the aggregates' own state after the events, so the test
proves that the projection and the SQL together say what the domain says.

One deliberate exception (see ``identity_sql``): robots exist only in organisations, so
the generator grants robots only in organisation namespaces. The model, given no
organisation, would take any robot of a user namespace as existing; the views do not.
``test_a_robot_of_a_user_namespace_gets_nothing`` pins that difference down.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cargohold.domain import authorization
from cargohold.domain.accounts import Account, Organization
from cargohold.domain.authorization import (
    ANONYMOUS,
    OrganizationFacts,
    RepositoryFacts,
    Requester,
    TeamFacts,
)
from cargohold.domain.errors import OwnersTeamProtected
from cargohold.domain.identity import (
    OWNERS_TEAM,
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
from cargohold.domain.values import RepositoryName
from cargohold.projections.identity_queries import IdentityQueries
from tests.integration.identity_log import IdentityLog, sqlite_settings

USERS = ("alice", "bob", "carol", "dave")
ORGS = ("acme", "globex")
UNCLAIMED = "ghost"
NAMESPACES = (*USERS, *ORGS, UNCLAIMED)
TEAMS = ("devs", "ops")
ROBOTS = ("ci", "bot")
REPOSITORIES = ("app", "lib")


class World:
    """What was built: the aggregates, whose state gives the model its facts."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.orgs: dict[str, Organization] = {}
        self.repos: dict[str, Repository] = {}

    def organization(self, namespace: str) -> OrganizationFacts | None:
        org = self.orgs.get(namespace)
        if org is None:
            return None
        return OrganizationFacts(
            name=namespace,
            teams={
                str(team): TeamFacts(role, frozenset(str(u) for u in org.team_members[team]))
                for team, role in org.team_roles.items()
            },
            robots=frozenset(str(r) for r in org.robots),
        )

    def repository(self, name: str) -> RepositoryFacts:
        namespace = name.partition("/")[0]
        repo = self.repos.get(name)
        if repo is None:
            return RepositoryFacts(namespace)
        # A deleted repository's state is already private without grants.
        return RepositoryFacts(namespace, repo.visibility, dict(repo.permissions))

    def callers(self) -> list[Requester]:
        users = [Requester(Principal.user(u), self.accounts[u].superuser) for u in USERS]
        robots = [
            Requester(Principal.robot(ns, short))
            for ns in (*ORGS, "alice", UNCLAIMED)
            for short in (*ROBOTS, "gone")
        ]
        return [ANONYMOUS, *users, *robots]

    def repository_names(self) -> list[str]:
        return sorted({*self.repos, *(f"{ns}/missing" for ns in NAMESPACES)})

    def live_repositories(self) -> list[str]:
        return sorted(name for name, repo in self.repos.items() if not repo.deleted)


def _some(data: st.DataObject, items: tuple[str, ...], label: str) -> list[str]:
    """Each item with a coin flip: dense facts, and a shrink towards fewer of them."""
    return [item for item in items if data.draw(st.booleans(), label=f"{label}: {item}")]


def _few(data: st.DataObject, items: tuple[str, ...], label: str) -> list[str]:
    """Each item with odds of one in four (superusers and removals: too many of either
    leave too few facts that matter)."""
    return [item for item in items if data.draw(st.integers(0, 3), label=f"{label}: {item}") == 3]


def _grantees(world: World, namespace: str) -> list[Principal]:
    users = [Principal.user(u) for u in USERS if u != namespace]  # the owner is refused
    teams = [Principal.team(namespace, t) for t in (*TEAMS, OWNERS_TEAM, "nope")]
    robots = (
        [Principal.robot(namespace, r) for r in (*ROBOTS, "gone")]
        if namespace in world.orgs
        else []
    )
    return users + teams + robots


def _grant_some(ident: IdentityLog, data: st.DataObject, world: World, repo: Repository) -> None:
    grants = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(_grantees(world, repo.name.namespace)),
                st.sampled_from(RepositoryRole),
            ),
            max_size=5,
        ),
        label=f"grants on {repo.name}",
    )
    for principal, role in grants:
        repo.grant(principal, role, ident.ctx())
    if data.draw(st.integers(0, 3), label=f"{repo.name} public") == 3:
        repo.set_visibility(Visibility.PUBLIC, ident.ctx())


def _build(ident: IdentityLog, data: st.DataObject) -> World:
    world = World()
    ctx = ident.ctx
    for name in USERS:
        superuser = data.draw(st.integers(0, 3), label=f"{name} created superuser") == 3
        world.accounts[name] = ident.user(name, superuser=superuser)
    for name in _few(data, USERS, "superuser toggled"):
        account = world.accounts[name]
        if account.superuser:
            account.revoke_superuser(ctx())
        else:
            account.grant_superuser(ctx())
    ident.save(*world.accounts.values())

    for name in ORGS:  # (``ghost`` is the namespace nobody holds)
        org = ident.organization(name, data.draw(st.sampled_from(USERS), label="owner"))
        for user in _few(data, USERS, f"{name} owners"):
            org.add_team_member(TeamName(OWNERS_TEAM), AccountName(user), ctx())
        # Every team and robot exists at first; the grants name missing ones too.
        for team in TEAMS:
            org.create_team(TeamName(team), data.draw(st.sampled_from(TeamRole)), ctx())
            for user in _some(data, USERS, f"{name}/{team} members"):
                org.add_team_member(TeamName(team), AccountName(user), ctx())
        for robot in ROBOTS:
            org.create_robot(RobotShortName(robot), f"sha256-{name}-{robot}", ctx())
        world.orgs[name] = org
    ident.save(*world.orgs.values())

    for namespace in NAMESPACES:
        for short in REPOSITORIES:
            repo = Repository.create(RepositoryName(f"{namespace}/{short}"), ctx())
            _grant_some(ident, data, world, repo)
            life = data.draw(st.sampled_from(["live", "deleted", "recreated"]), label="life")
            if life != "live":
                repo.delete(ctx())
            if life == "recreated":
                ident.save(repo)  # the deletion and the recreation in separate saves
                repo.recreate(ctx())
                _grant_some(ident, data, world, repo)
            world.repos[repo.name] = repo
    ident.save(*world.repos.values())

    # Then identity changes whose repository grants the command layer would revoke; here
    # they stay, so the views must ignore grants of deleted teams and robots.
    for name, org in world.orgs.items():
        others = tuple(t for t in org.team_roles if t != OWNERS_TEAM)
        for team in _few(data, others, f"{name} teams deleted"):
            org.delete_team(TeamName(team), ctx())
        others = tuple(t for t in org.team_roles if t != OWNERS_TEAM)
        for team in _few(data, others, f"{name} teams changing role"):
            org.set_team_role(TeamName(team), data.draw(st.sampled_from(TeamRole)), ctx())
        for team, members in sorted(org.team_members.items()):
            for user in _few(data, tuple(sorted(members)), f"{name}/{team} leaving"):
                with contextlib.suppress(OwnersTeamProtected):  # the last owner stays
                    org.remove_team_member(TeamName(team), AccountName(user), ctx())
        for robot in _few(data, tuple(sorted(org.robots)), f"{name} robots deleted"):
            org.delete_robot(RobotShortName(robot), ctx())
        for user in _few(data, tuple(sorted(org.members)), f"{name} members removed"):
            with contextlib.suppress(OwnersTeamProtected):
                org.remove_member(AccountName(user), ctx())
    ident.save(*world.orgs.values())
    return world


def _disagreements(q: IdentityQueries, world: World) -> list[Any]:
    found: list[Any] = []
    for caller in world.callers():
        readable: list[str] = []
        for name in world.repository_names():
            facts = world.repository(name)
            expected = authorization.effective_role(
                caller, facts, world.organization(facts.namespace)
            )
            got = q.effective_role(caller, name)
            if got != expected:
                found.append(("effective_role", caller, name, expected, got))
            if expected is not None and name in world.live_repositories():
                readable.append(name)
        for namespace in NAMESPACES:
            expected_create = authorization.may_create_repository(
                caller, namespace, world.organization(namespace)
            )
            if q.may_create_repository(caller, namespace) != expected_create:
                found.append(("may_create_repository", caller, namespace, expected_create))
            in_namespace = [n for n in readable if n.startswith(f"{namespace}/")]
            got_in = q.readable_repositories(caller, namespace=namespace)
            if got_in != in_namespace:
                found.append(("readable in namespace", caller, namespace, in_namespace, got_in))
        if q.readable_repositories(caller) != readable:
            found.append(("readable", caller, readable, q.readable_repositories(caller)))
        if readable:
            page = q.readable_repositories(caller, after=readable[0], limit=2)
            if page != readable[1:3]:
                found.append(("readable page", caller, readable[1:3], page))
    return found


def _identity_disagreements(q: IdentityQueries, world: World) -> list[Any]:
    """The identity views against the aggregates' state."""
    found: list[Any] = []
    for name, account in world.accounts.items():
        row = q.account(name)
        if row is None or row.superuser != account.superuser:
            found.append(("account", name, row))
    for name, org in world.orgs.items():
        if q.org_members(name) != sorted(org.members):
            found.append(("org_members", name))
        teams = [(t.name, t.role, t.member_count) for t in q.teams(name)]
        expected = sorted((t, r, len(org.team_members[t])) for t, r in org.team_roles.items())
        if teams != expected:
            found.append(("teams", name, expected, teams))
        if [r.short_name for r in q.robots(name)] != sorted(org.robots):
            found.append(("robots", name))
        for team in (*TEAMS, OWNERS_TEAM):
            if q.team_members(name, team) != sorted(org.team_members.get(TeamName(team), ())):
                found.append(("team_members", name, team))
        for user in USERS:
            if q.teams_of(name, user) != org.teams_of(AccountName(user)):
                found.append(("teams_of", name, user))
    for user in USERS:
        orgs = sorted(n for n, org in world.orgs.items() if user in org.members)
        if q.organizations_of(user) != orgs:
            found.append(("organizations_of", user, orgs))
    for name, repo in world.repos.items():
        grants = sorted(repo.permissions.items(), key=lambda g: g[0].sort_key)
        if q.repository_grants(name) != grants:
            found.append(("repository_grants", name, grants))
    return found


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_the_views_agree_with_the_authorization_model(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ident = IdentityLog(sqlite_settings(Path(tmp)))
        try:
            world = _build(ident, data)
            assert _identity_disagreements(ident.queries, world) == []
            assert _disagreements(ident.queries, world) == []
        finally:
            ident.close()


def test_a_robot_of_a_user_namespace_gets_nothing(tmp_path: Path) -> None:
    """Only organisations have robots: a grant to ``alice+ci`` (which the domain accepts,
    not knowing whether ``alice`` is an organisation) gives nothing, in both."""
    ident = IdentityLog(sqlite_settings(tmp_path))
    try:
        ident.user("alice")
        repo = ident.repository("alice/app")
        robot = Principal(PrincipalKind.ROBOT, "alice+ci")
        repo.grant(robot, RepositoryRole.WRITE, ident.ctx())  # the domain allows the grant
        ident.save(repo)
        caller = Requester(robot)
        model = authorization.effective_role(
            caller, RepositoryFacts("alice", Visibility.PRIVATE, {robot: RepositoryRole.WRITE})
        )
        assert model is None
        assert ident.queries.effective_role(caller, "alice/app") is None
        assert ident.queries.readable_repositories(caller) == []
    finally:
        ident.close()
