"""The live server agrees with the independent access model (issue 4, point 5).

One real ``cargohold serve`` (access control on) serves the whole module. A hypothesis
state machine drives it through ``/api/v1`` only, the way clients do: users (some made
superusers and back), organisations created by a user (who lands in ``owners``: R3),
teams of random roles created, re-roled, deleted and re-created under the same name,
members added to and removed from teams and from the organisation, robots created,
deleted and re-created under the same name, default permissions (Quay's prototypes)
set and removed, repositories created by random callers (C1-C3; an organisation's new
repository gets its default permissions and an admin grant for its creator), deleted
and re-created, grants and revocations to users, teams and robots, visibility changes.
Every write is sent by a random actor (mostly one the model allows): the model says
whether it must succeed, or be refused (403) and change nothing; invalid writes (a grant
to the namespace's own user or to a robot of another namespace, removing the last owner,
a robot joining a team) must be 400, a grant to a team the organisation lacks 404.

The model keeps only the facts those calls establish and answers with the pure functions
of ``cargohold.domain.authorization``. After every step a random sample, and at the end
of each example *every* (principal, repository, check), is compared with the server,
principals being admin, each user, each live robot (``org+short`` and its token) and the
anonymous caller, repositories every one the example created (deleted ones included):

- ``/v2`` with Basic credentials: pull (tags/list), push (start an upload, then cancel
  it), delete (a manifest that is not there: 404 when allowed);
- the token flow: ``/v2/auth`` for pull,push,delete gives exactly the allowed actions,
  and the token then pulls or is refused;
- ``/api/v1``: reading the repository (``can_write``/``can_admin`` included) and its
  permission list (admin);
- creation: ``/v2/auth`` for push on a name that does not exist, in every namespace;
- and, as admin, each live repository's explicit grants equal the model's (cascades).

A refusal is 401 for the anonymous caller and 403 for a known one; a private repository
the caller may not read looks the same whether it exists or not (guard.py), a deleted one
that the caller may read (R1-R3) is 404. Each example's names carry a fresh prefix, so
examples share the server but not their facts.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cargohold.domain import authorization
from cargohold.domain.authorization import (
    ANONYMOUS,
    Action,
    OrganizationFacts,
    RepositoryFacts,
    Requester,
    TeamFacts,
)
from cargohold.domain.identity import (
    OWNERS_TEAM,
    Principal,
    PrincipalKind,
    RepositoryRole,
    TeamRole,
    Visibility,
)
from tests.fixtures.server import serving
from tests.fixtures.services import free_port
from tests.fixtures.v2client import Response, V2Client

pytestmark = pytest.mark.slow

ADMIN = "admin"
PASSWORD = "pw-" + base64.b32encode(os.urandom(10)).decode()
ZERO_DIGEST = "sha256:" + "0" * 64
TEAMS = ("devs", "ops", "qa")
ROBOTS = ("ci", "bot")
REPOS = ("app", "lib", "web")
MAX_USERS = 5
MAX_ORGS = 3
SAMPLE = 10
CHECKS = ("v2-pull", "v2-push", "v2-delete", "token", "api-read", "api-admin")
SETTINGS = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_examples = itertools.count()
#: What the run exercised (writes by route and expected status, checks by outcome).
TALLY: collections.Counter[str] = collections.Counter()

Who = str | None  # "admin", a user, "org+short" for a robot; None is anonymous


@dataclass
class Live:
    client: V2Client
    admin_password: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root: Path = tmp_path_factory.mktemp("cargohold-stateful")
    admin_password = "admin-" + base64.b32encode(os.urandom(10)).decode()
    env = {"CARGOHOLD_AUTH": "on", "CARGOHOLD_ADMIN_PASSWORD": admin_password}
    args = ("--data-dir", str(root / "data"), "--listen", f"127.0.0.1:{free_port()}")
    with serving(*args, cwd=root, env=env) as server:
        yield Live(V2Client(server.url), admin_password)


# -- the model's facts --------------------------------------------------------------------


@dataclass
class Team:
    role: TeamRole
    members: set[str] = field(default_factory=set)


@dataclass
class Org:
    name: str
    teams: dict[str, Team]
    members: set[str]
    robots: dict[str, str] = field(default_factory=dict)  # short name -> token
    defaults: dict[Principal, RepositoryRole] = field(default_factory=dict)
    prototype_ids: dict[Principal, str] = field(default_factory=dict)

    def facts(self) -> OrganizationFacts:
        teams = {n: TeamFacts(t.role, frozenset(t.members)) for n, t in self.teams.items()}
        return OrganizationFacts(self.name, teams, frozenset(self.robots))


@dataclass
class Repo:
    name: str
    visibility: Visibility
    grants: dict[Principal, RepositoryRole]
    live: bool = True

    @property
    def namespace(self) -> str:
        return self.name.partition("/")[0]

    def facts(self) -> RepositoryFacts:
        if not self.live:  # a deleted repository is private and has no grants
            return RepositoryFacts(self.namespace)
        return RepositoryFacts(self.namespace, self.visibility, dict(self.grants))


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def _claims(token: str) -> Any:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _show(r: Response) -> str:
    return f"{r.status} {r.body[:300]!r}"


_ROUTE_WORDS = {"superuser", "users", "organization", "team", "members", "robots", "prototypes"}
_ROUTE_WORDS |= {"repository", "permissions", "user", "changevisibility"}


def _shape(path: str) -> str:
    """``/organization/s1-o0/team/devs`` -> ``/organization/*/team/*`` (for statistics)."""
    return "/".join(p if p in _ROUTE_WORDS or not p else "*" for p in path.split("/"))


def _refusal(who: Who) -> int:
    return 401 if who is None else 403


class AccessMachine(RuleBasedStateMachine):
    live: Live  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"s{next(_examples)}"
        self.superusers: dict[str, bool] = {ADMIN: True}
        self.orgs: dict[str, Org] = {}
        self.repos: dict[str, Repo] = {}
        self.rnd = random.Random(0)
        self.never = itertools.count()

    # -- talking to the server -----------------------------------------------------------

    def secret(self, who: str) -> str:
        if who == ADMIN:
            return self.live.admin_password
        if "+" in who:
            org, _, short = who.partition("+")
            return self.orgs[org].robots[short]
        return PASSWORD

    def call(self, who: Who, method: str, path: str, body: Any = None, **params: str) -> Response:
        headers = {} if who is None else {"Authorization": _basic(who, self.secret(who))}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return self.live.client.request(method, path, data, headers, params or None)

    def write(self, who: Who, method: str, path: str, body: Any, status: int) -> Response:
        """Send a write the model expects to answer ``status``."""
        r = self.call(who, method, "/api/v1" + path, body)
        TALLY[f"write {method} {_shape(path)} {status}"] += 1
        assert r.status == status, (
            f"{who} {method} /api/v1{path} {body!r}: expected {status}, got {_show(r)}\n"
            + self.describe()
        )
        return r

    # -- what the model says -------------------------------------------------------------

    def caller(self, who: Who) -> Requester:
        if who is None:
            return ANONYMOUS
        if "+" in who:
            org, _, short = who.partition("+")
            return Requester(Principal.robot(org, short))
        return Requester(Principal.user(who), self.superusers[who])

    def org_facts(self, namespace: str) -> OrganizationFacts | None:
        org = self.orgs.get(namespace)
        return None if org is None else org.facts()

    def role(self, who: Who, repo: Repo) -> RepositoryRole | None:
        return authorization.effective_role(
            self.caller(who), repo.facts(), self.org_facts(repo.namespace)
        )

    def may(self, who: Who, action: Action, repo: Repo) -> bool:
        return authorization.may(
            self.caller(who), action, repo.facts(), self.org_facts(repo.namespace)
        )

    def creates(self, who: Who, namespace: str) -> bool:
        return authorization.may_create_repository(
            self.caller(who), namespace, self.org_facts(namespace)
        )

    def v2_may(self, who: Who, action: Action, repo: Repo) -> bool:
        """/v2 also lets a creator pull and push a name that does not exist (push-to-create)."""
        if self.may(who, action, repo):
            return True
        creating = action in (Action.PULL, Action.PUSH) and self.creates(who, repo.namespace)
        return not repo.live and creating

    def is_org_admin(self, who: Who, org: Org) -> bool:
        """guard.py: a superuser, or a user in a team of the organisation with role admin."""
        if who is None or "+" in who:
            return False
        if self.superusers[who]:
            return True
        return any(who in t.members and t.role is TeamRole.ADMIN for t in org.teams.values())

    def users(self) -> list[str]:
        return [u for u in self.superusers if u != ADMIN]

    def robots(self) -> list[str]:
        return [f"{o.name}+{r}" for o in self.orgs.values() for r in o.robots]

    def principals(self) -> list[Who]:
        return [*self.superusers, *self.robots(), None]

    def namespaces(self) -> list[str]:
        return [*self.users(), *self.orgs]

    def describe(self, repo: Repo | None = None) -> str:
        lines = [f"superusers: {self.superusers}"]
        lines += [f"org {o.name}: {o.facts()} defaults={o.defaults}" for o in self.orgs.values()]
        lines += [f"repo {r.name}: live={r.live} {r.facts()}" for r in self.repos.values()]
        if repo is not None:
            lines.insert(0, f"checked repo facts: {repo.facts()}")
        return "model facts:\n  " + "\n  ".join(lines)

    def actor(
        self, data: st.DataObject, allowed: Callable[[str], bool], robots: bool = True
    ) -> str:
        """Who sends a write: four times in five someone the model lets do it (when there
        is one), else someone it does not (a robot too), whose write must be refused."""
        pool = [*self.superusers, *(self.robots() if robots else [])]
        good = [w for w in pool if allowed(w)]
        bad = [w for w in pool if not allowed(w)]
        # NOTE: small draws mean "allowed", so that shrinking prefers writes that hold.
        use_good = bool(good) and (not bad or data.draw(st.integers(0, 9), label="refused?") < 8)
        return data.draw(st.sampled_from(good if use_good else bad), label="actor")

    @staticmethod
    def prefer(data: st.DataObject, good: list[str], every: list[str]) -> str:
        """One of ``good`` four times in five (if any), else one of ``every``."""
        if good and data.draw(st.integers(0, 9), label="other?") < 8:
            return data.draw(st.sampled_from(good))
        return data.draw(st.sampled_from(every))

    def org_actor(self, data: st.DataObject, org: Org) -> str:
        return self.actor(data, lambda w: self.is_org_admin(w, org))

    def repo_actor(self, data: st.DataObject, repo: Repo) -> str:
        return self.actor(data, lambda w: self.role(w, repo) is RepositoryRole.ADMIN)

    # -- setup ---------------------------------------------------------------------------

    @initialize(data=st.data(), rnd=st.randoms(use_true_random=False))
    def setup(self, data: st.DataObject, rnd: random.Random) -> None:
        """Three users; one or two organisations, each with a team ``devs`` of a random
        role and member and a robot ``ci``; a repository in each organisation (by its
        owner) and in one user's namespace."""
        self.rnd = rnd
        for _ in range(3):
            self.add_user()
        users = self.users()
        owners = data.draw(st.lists(st.sampled_from(users), min_size=1, max_size=2), label="owners")
        for owner in owners:
            org = self.create_org(owner)
            role = data.draw(st.sampled_from(TeamRole), label="role")
            member = data.draw(st.sampled_from(users), label="member")
            path = f"/organization/{org.name}/team/{TEAMS[0]}"
            self.write(owner, "PUT", path, {"role": role.value}, 200)
            self.write(owner, "PUT", f"{path}/members/{member}", None, 200)
            org.teams[TEAMS[0]] = Team(role, {member})
            org.members.add(member)
            r = self.write(owner, "PUT", f"/organization/{org.name}/robots/{ROBOTS[0]}", None, 201)
            org.robots[ROBOTS[0]] = r.json()["token"]
            self.new_repository(owner, org.name, REPOS[0], data.draw(st.sampled_from(Visibility)))
        user = data.draw(st.sampled_from(users), label="user")
        self.new_repository(user, user, REPOS[0], data.draw(st.sampled_from(Visibility)))

    @precondition(lambda self: len(self.superusers) <= MAX_USERS)
    @rule()
    def add_user(self) -> None:
        name = f"{self.prefix}-u{len(self.superusers)}"
        body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        self.write(ADMIN, "POST", "/superuser/users/", body, 200)
        self.superusers[name] = False

    @precondition(lambda self: len(self.orgs) < MAX_ORGS)
    @rule(data=st.data())
    def add_org(self, data: st.DataObject) -> None:
        self.create_org(data.draw(st.sampled_from(self.users()), label="owner"))

    def create_org(self, owner: str) -> Org:
        name = f"{self.prefix}-o{len(self.orgs)}"
        self.write(owner, "POST", "/organization/", {"name": name}, 201)
        org = self.orgs[name] = Org(name, {OWNERS_TEAM: Team(TeamRole.ADMIN, {owner})}, {owner})
        return org

    @rule(data=st.data(), superuser=st.booleans())
    def set_superuser(self, data: st.DataObject, superuser: bool) -> None:
        who = self.actor(data, lambda w: self.superusers.get(w, False), robots=False)
        target = data.draw(st.sampled_from(self.users()), label="target")
        ok = self.superusers[who]
        body = {"superuser": superuser}
        self.write(who, "PUT", f"/superuser/users/{target}", body, 200 if ok else 403)
        if ok:
            self.superusers[target] = superuser

    # -- organisations -------------------------------------------------------------------

    def draw_org(self, data: st.DataObject) -> Org:
        return self.orgs[data.draw(st.sampled_from(sorted(self.orgs)), label="org")]

    @precondition(lambda self: self.orgs)
    @rule(
        data=st.data(), team=st.sampled_from((OWNERS_TEAM, *TEAMS)), role=st.sampled_from(TeamRole)
    )
    def upsert_team(self, data: st.DataObject, team: str, role: TeamRole) -> None:
        org = self.draw_org(data)
        who = self.org_actor(data, org)
        status = 200
        if not self.is_org_admin(who, org):
            status = 403
        elif team == OWNERS_TEAM and role is not TeamRole.ADMIN:
            status = 400
        path = f"/organization/{org.name}/team/{team}"
        self.write(who, "PUT", path, {"role": role.value}, status)
        if status == 200:
            org.teams.setdefault(team, Team(role)).role = role

    @precondition(lambda self: self.orgs)
    @rule(data=st.data())
    def delete_team(self, data: st.DataObject) -> None:
        org = self.draw_org(data)
        who = self.org_actor(data, org)
        teams = sorted(org.teams)
        team = self.prefer(data, [t for t in teams if t != OWNERS_TEAM], teams)
        status = 204 if team != OWNERS_TEAM else 400
        status = status if self.is_org_admin(who, org) else 403
        self.write(who, "DELETE", f"/organization/{org.name}/team/{team}", None, status)
        if status == 204:
            del org.teams[team]
            self.forget(org, Principal.team(org.name, team))

    def forget(self, org: Org, principal: Principal) -> None:
        """A deleted team or robot, or a user removed from the organisation, loses its
        grants on the organisation's repositories and its default permission."""
        org.defaults.pop(principal, None)
        for repo in self.repos.values():
            if repo.namespace == org.name:
                repo.grants.pop(principal, None)

    @precondition(lambda self: self.orgs)
    @rule(data=st.data())
    def add_team_member(self, data: st.DataObject) -> None:
        org = self.draw_org(data)
        who = self.org_actor(data, org)
        team = data.draw(st.sampled_from(sorted(org.teams)), label="team")
        pool = [*self.superusers, *(f"{org.name}+{r}" for r in org.robots)]
        member = data.draw(st.sampled_from(pool), label="member")
        status = 200 if "+" not in member else 400  # robots cannot join teams
        status = status if self.is_org_admin(who, org) else 403
        path = f"/organization/{org.name}/team/{team}/members/{member}"
        self.write(who, "PUT", path, None, status)
        if status == 200:
            org.teams[team].members.add(member)
            org.members.add(member)

    @staticmethod
    def last_owner(org: Org, user: str) -> bool:
        return org.teams[OWNERS_TEAM].members == {user}

    @precondition(lambda self: self.orgs)  # owners is never empty
    @rule(data=st.data())
    def remove_team_member(self, data: st.DataObject) -> None:
        """The user stays an org member and keeps explicit grants. Mostly a removal that
        holds; the last owner only when there is nothing else (400)."""
        pairs = [
            (org, team, member)
            for org in self.orgs.values()
            for team, t in sorted(org.teams.items())
            for member in sorted(t.members)
        ]
        valid = [p for p in pairs if not (p[1] == OWNERS_TEAM and self.last_owner(p[0], p[2]))]
        org, team, member = data.draw(st.sampled_from(valid or pairs), label="team member")
        who = self.org_actor(data, org)
        status = 204 if (org, team, member) in valid else 400
        status = status if self.is_org_admin(who, org) else 403
        path = f"/organization/{org.name}/team/{team}/members/{member}"
        self.write(who, "DELETE", path, None, status)
        if status == 204:
            org.teams[team].members.discard(member)

    @precondition(lambda self: self.orgs)
    @rule(data=st.data())
    def remove_org_member(self, data: st.DataObject) -> None:
        """Quay's member DELETE: out of every team, and their grants in the org go. The
        last owner only when there is no one else (400)."""
        org = self.draw_org(data)
        who = self.org_actor(data, org)
        valid = sorted(m for m in org.members if not self.last_owner(org, m))
        member = data.draw(st.sampled_from(valid or sorted(org.members)), label="member")
        status = 204 if member in valid else 400
        status = status if self.is_org_admin(who, org) else 403
        self.write(who, "DELETE", f"/organization/{org.name}/members/{member}", None, status)
        if status == 204:
            for team in org.teams.values():
                team.members.discard(member)
            org.members.discard(member)
            self.forget(org, Principal.user(member))

    @precondition(lambda self: self.orgs)
    @rule(data=st.data(), short=st.sampled_from(ROBOTS))
    def create_robot(self, data: st.DataObject, short: str) -> None:
        org = self.draw_org(data)
        who = self.org_actor(data, org)
        status = 201 if short not in org.robots else 400
        status = status if self.is_org_admin(who, org) else 403
        r = self.write(who, "PUT", f"/organization/{org.name}/robots/{short}", None, status)
        if status == 201:
            org.robots[short] = r.json()["token"]

    @precondition(lambda self: self.robots())
    @rule(data=st.data())
    def delete_robot(self, data: st.DataObject) -> None:
        robot = data.draw(st.sampled_from(self.robots()), label="robot")
        org_name, _, short = robot.partition("+")
        org = self.orgs[org_name]
        who = self.org_actor(data, org)
        status = 204 if self.is_org_admin(who, org) else 403
        token = org.robots[short]
        self.write(who, "DELETE", f"/organization/{org_name}/robots/{short}", None, status)
        if status == 204:
            del org.robots[short]
            self.forget(org, Principal.robot(org_name, short))
            # Its token no longer logs in, on /v2 as on /api/v1.
            headers = {"Authorization": _basic(robot, token)}
            for path in ("/v2/auth", "/api/v1/user/"):
                r = self.live.client.request("GET", path, headers=headers)
                assert r.status == 401, f"deleted robot {robot} still logs in: {_show(r)}"

    @precondition(lambda self: self.orgs)
    @rule(data=st.data(), role=st.sampled_from(RepositoryRole))
    def set_default_permission(self, data: st.DataObject, role: RepositoryRole) -> None:
        org = self.draw_org(data)
        who = self.org_actor(data, org)
        delegates = [Principal.user(u) for u in self.superusers]
        delegates += [Principal.team(org.name, t) for t in org.teams]
        delegates += [Principal.robot(org.name, r) for r in org.robots]
        delegate = data.draw(st.sampled_from(delegates), label="delegate")
        kind = "team" if delegate.kind is PrincipalKind.TEAM else "user"
        body = {"role": role.value, "delegate": {"name": delegate.short_name, "kind": kind}}
        if delegate.kind is PrincipalKind.ROBOT:
            body["delegate"] = {"name": delegate.name, "kind": "user"}
        ok = self.is_org_admin(who, org)
        r = self.write(
            who, "POST", f"/organization/{org.name}/prototypes", body, 200 if ok else 403
        )
        if ok:
            org.defaults[delegate] = role
            org.prototype_ids[delegate] = r.json()["id"]

    @precondition(lambda self: any(o.defaults for o in self.orgs.values()))
    @rule(data=st.data())
    def remove_default_permission(self, data: st.DataObject) -> None:
        orgs = sorted(n for n, o in self.orgs.items() if o.defaults)
        org = self.orgs[data.draw(st.sampled_from(orgs), label="org")]
        who = self.org_actor(data, org)
        delegate = data.draw(st.sampled_from(sorted(org.defaults, key=str)), label="delegate")
        ok = self.is_org_admin(who, org)
        path = f"/organization/{org.name}/prototypes/{org.prototype_ids[delegate]}"
        self.write(who, "DELETE", path, None, 204 if ok else 403)
        if ok:
            del org.defaults[delegate]

    # -- repositories --------------------------------------------------------------------

    @rule(data=st.data(), short=st.sampled_from(REPOS), visibility=st.sampled_from(Visibility))
    def create_repository(self, data: st.DataObject, short: str, visibility: Visibility) -> None:
        namespace = data.draw(st.sampled_from(self.namespaces()), label="namespace")
        if f"{namespace}/{short}" not in self.repos or not self.repos[f"{namespace}/{short}"].live:
            who = self.actor(data, lambda w: self.creates(w, namespace))
            self.new_repository(who, namespace, short, visibility)

    def new_repository(self, who: str, namespace: str, short: str, visibility: Visibility) -> None:
        """POST /repository by ``who``: 201 by C1-C3, else 403. In an organisation the new
        repository gets its default permissions and admin for its (user) creator."""
        ok = self.creates(who, namespace)
        body = {
            "namespace": namespace,
            "repository": short,
            "visibility": visibility.value,
            "description": "",
        }
        self.write(who, "POST", "/repository", body, 201 if ok else 403)
        if not ok:
            return
        grants: dict[Principal, RepositoryRole] = {}
        if namespace in self.orgs:
            grants.update(self.orgs[namespace].defaults)
            if "+" not in who:
                grants[Principal.user(who)] = RepositoryRole.ADMIN
        name = f"{namespace}/{short}"
        self.repos[name] = Repo(name, visibility, grants)

    def draw_repo(self, data: st.DataObject, where: Callable[[Repo], bool] = bool) -> Repo:
        names = sorted(n for n, r in self.repos.items() if r.live and where(r))
        return self.repos[data.draw(st.sampled_from(names), label="repo")]

    def has_repo(self, where: Callable[[Repo], bool] = bool) -> bool:
        return any(r.live and where(r) for r in self.repos.values())

    def repo_write(
        self, who: str, repo: Repo, method: str, tail: str, body: Any, status: int
    ) -> bool:
        """A write that needs repository admin; True if the model expects it applied."""
        if self.role(who, repo) is not RepositoryRole.ADMIN:
            status = 403
        self.write(who, method, f"/repository/{repo.name}{tail}", body, status)
        return status < 300

    @precondition(lambda self: self.has_repo())
    @rule(data=st.data())
    def delete_repository(self, data: st.DataObject) -> None:
        repo = self.draw_repo(data)
        who = self.repo_actor(data, repo)
        if self.repo_write(who, repo, "DELETE", "", None, 204):
            repo.live, repo.visibility, repo.grants = False, Visibility.PRIVATE, {}

    @precondition(lambda self: self.has_repo())
    @rule(data=st.data(), role=st.sampled_from(RepositoryRole))
    def grant_user(self, data: st.DataObject, role: RepositoryRole) -> None:
        """Not to the namespace's own user, who is always admin (400)."""
        repo = self.draw_repo(data)
        who = self.repo_actor(data, repo)
        targets = list(self.superusers)
        target = self.prefer(data, [u for u in targets if u != repo.namespace], targets)
        status = 400 if target == repo.namespace else 200
        tail = f"/permissions/user/{target}"
        if self.repo_write(who, repo, "PUT", tail, {"role": role.value}, status):
            repo.grants[Principal.user(target)] = role

    @precondition(lambda self: self.robots() and self.has_repo())
    @rule(data=st.data(), role=st.sampled_from(RepositoryRole))
    def grant_robot(self, data: st.DataObject, role: RepositoryRole) -> None:
        """A robot serves its own namespace only (400 elsewhere)."""
        repo = self.draw_repo(data)
        who = self.repo_actor(data, repo)
        robots = self.robots()
        robot = self.prefer(data, [r for r in robots if r.startswith(f"{repo.namespace}+")], robots)
        org, _, short = robot.partition("+")
        status = 200 if org == repo.namespace else 400
        tail = f"/permissions/user/{robot}"
        if self.repo_write(who, repo, "PUT", tail, {"role": role.value}, status):
            repo.grants[Principal.robot(org, short)] = role

    @precondition(lambda self: self.has_repo(lambda r: r.namespace in self.orgs))
    @rule(
        data=st.data(),
        team=st.sampled_from((OWNERS_TEAM, *TEAMS)),
        role=st.sampled_from(RepositoryRole),
    )
    def grant_team(self, data: st.DataObject, team: str, role: RepositoryRole) -> None:
        repo = self.draw_repo(data, lambda r: r.namespace in self.orgs)
        who = self.repo_actor(data, repo)
        status = 200 if team in self.orgs[repo.namespace].teams else 404
        tail = f"/permissions/team/{team}"
        if self.repo_write(who, repo, "PUT", tail, {"role": role.value}, status):
            repo.grants[Principal.team(repo.namespace, team)] = role

    @precondition(lambda self: self.has_repo(lambda r: bool(r.grants)))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        repo = self.draw_repo(data, lambda r: bool(r.grants))
        who = self.repo_actor(data, repo)
        principal = data.draw(st.sampled_from(sorted(repo.grants, key=str)), label="principal")
        kind = "team" if principal.kind is PrincipalKind.TEAM else "user"
        name = principal.short_name if kind == "team" else principal.name
        if self.repo_write(who, repo, "DELETE", f"/permissions/{kind}/{name}", None, 204):
            del repo.grants[principal]

    @precondition(lambda self: self.has_repo())
    @rule(data=st.data(), visibility=st.sampled_from(Visibility))
    def change_visibility(self, data: st.DataObject, visibility: Visibility) -> None:
        repo = self.draw_repo(data)
        who = self.repo_actor(data, repo)
        body = {"visibility": visibility.value}
        if self.repo_write(who, repo, "POST", "/changevisibility", body, 200):
            repo.visibility = visibility

    # -- the checks ----------------------------------------------------------------------

    def check(self, who: Who, repo: Repo, kind: str) -> str | None:
        """Compare one (principal, repository, check) with the server; a disagreement's
        description, or None."""
        if kind == "token":
            problem = self.check_token(who, repo)
        elif kind.startswith("v2-"):
            problem = self.check_v2(who, repo, kind)
        else:
            problem = self.check_api(who, repo, kind)
        if problem:
            return f"{kind}: {problem} (model role: {self.role(who, repo)})"
        return None

    def check_v2(self, who: Who, repo: Repo, kind: str) -> str | None:
        """Status and OCI error code of one /v2 request with Basic credentials."""
        action = {"v2-pull": Action.PULL, "v2-push": Action.PUSH}.get(kind, Action.DELETE_TAG)
        allowed = self.v2_may(who, action, repo)
        TALLY[f"check {kind} {'allowed' if allowed else 'refused'}"] += 1
        missing = "MANIFEST_UNKNOWN" if repo.live else "NAME_UNKNOWN"
        if action is Action.PULL:
            r = self.call(who, "GET", f"/v2/{repo.name}/tags/list")
            ok = (200, None) if repo.live else (404, "NAME_UNKNOWN")
        elif action is Action.PUSH:
            r = self.call(who, "POST", f"/v2/{repo.name}/blobs/uploads/")
            ok = (202, None)
        else:
            r = self.call(who, "DELETE", f"/v2/{repo.name}/manifests/{ZERO_DIGEST}")
            ok = (404, missing)
        expected = ok if allowed else (_refusal(who), "UNAUTHORIZED" if who is None else "DENIED")
        code = r.json()["errors"][0]["code"] if r.status >= 400 else None
        if (r.status, code) != expected:
            return f"expected {expected}, got {_show(r)}"
        if r.status == 202:
            cancel = self.call(who, "DELETE", r.headers["location"])
            if cancel.status != 204:
                return f"cancelling the upload: expected 204, got {_show(cancel)}"
        return None

    def check_api(self, who: Who, repo: Repo, kind: str) -> str | None:
        """GET the repository (read) or its user permissions (admin) on /api/v1."""
        allowed = self.may(who, Action.PULL if kind == "api-read" else Action.ADMIN, repo)
        TALLY[f"check {kind} {'allowed' if allowed else 'refused'}"] += 1
        tail = "" if kind == "api-read" else "/permissions/user/"
        r = self.call(who, "GET", f"/api/v1/repository/{repo.name}{tail}", includeTags="false")
        expected = (200 if repo.live else 404) if allowed else _refusal(who)
        if r.status != expected:
            return f"expected {expected}, got {_show(r)}"
        if kind == "api-read" and r.status == 200:
            role = self.role(who, repo)
            view = r.json()
            seen = (view["can_write"], view["can_admin"], view["is_public"])
            want = (
                role is not None and role >= RepositoryRole.WRITE,
                role is RepositoryRole.ADMIN,
                repo.visibility is Visibility.PUBLIC,
            )
            if seen != want:
                return f"expected can_write/can_admin/is_public {want}, got {seen}"
        return None

    def token_actions(self, who: Who, name: str, actions: str) -> tuple[set[str], str]:
        headers = {} if who is None else {"Authorization": _basic(who, self.secret(who))}
        params = {"service": "cargohold", "scope": f"repository:{name}:{actions}"}
        r = self.live.client.request("GET", "/v2/auth", headers=headers, params=params)
        assert r.status == 200, f"token for {who} on {name}: {_show(r)}"
        token = r.json()["token"]
        (entry,) = [a for a in _claims(token)["access"] if a["name"] == name]
        return set(entry["actions"]), token

    def check_token(self, who: Who, repo: Repo) -> str | None:
        """/v2/auth grants exactly the allowed actions, and its token pulls (or not)."""
        granted, token = self.token_actions(who, repo.name, "pull,push,delete")
        wanted = {
            verb
            for verb, action in (
                ("pull", Action.PULL),
                ("push", Action.PUSH),
                ("delete", Action.DELETE_TAG),
            )
            if self.v2_may(who, action, repo)
        }
        TALLY[f"check token {'allowed' if wanted else 'refused'}"] += 1
        if granted != wanted:
            return f"expected actions {sorted(wanted)}, got {sorted(granted)}"
        r = self.live.client.request(
            "GET", f"/v2/{repo.name}/tags/list", headers={"Authorization": f"Bearer {token}"}
        )
        expected = (200 if repo.live else 404) if "pull" in wanted else _refusal(who)
        if r.status != expected:
            return f"a pull with the token: expected {expected}, got {_show(r)}"
        return None

    def check_creation(self, who: Who, namespace: str) -> str | None:
        """/v2/auth grants push on a name that does not exist to a creator (C1-C3)."""
        name = f"{namespace}/never-{next(self.never)}"
        empty = Repo(name, Visibility.PRIVATE, {}, live=False)
        wanted = self.creates(who, namespace) or self.may(who, Action.PUSH, empty)
        granted, _ = self.token_actions(who, name, "push")
        TALLY[f"check create {'allowed' if wanted else 'refused'}"] += 1
        if ("push" in granted) != wanted:
            return f"create in {namespace}: expected push {wanted}, got {sorted(granted)}"
        return None

    def check_grants(self, repo: Repo) -> str | None:
        """As admin: the explicit grants the server lists are the model's."""
        listed: dict[Principal, str] = {}
        for kind in ("user", "team"):
            r = self.call(ADMIN, "GET", f"/api/v1/repository/{repo.name}/permissions/{kind}/")
            assert r.status == 200, f"permissions of {repo.name}: {_show(r)}"
            for key, view in r.json()["permissions"].items():
                if kind == "team":
                    principal = Principal.team(repo.namespace, key)
                elif view["is_robot"]:
                    principal = Principal.robot(*key.split("+"))
                else:
                    principal = Principal.user(key)
                listed[principal] = view["role"]
        want = {p: role.value for p, role in repo.grants.items()}
        if listed != want:
            return f"grants: expected {want}, got {listed}"
        return None

    def report(self, found: list[tuple[Who, Repo | None, str]]) -> None:
        if not found:
            return
        lines = [
            f"principal={who!r} superuser={self.superusers.get(who or '', False)} "
            f"repository={repo.name if repo else '-'}: {problem}"
            for who, repo, problem in found[:30]
        ]
        first_repo = next((repo for _, repo, _ in found if repo is not None), None)
        raise AssertionError(
            f"{len(found)} disagreement(s) with the model:\n"
            + "\n".join(lines)
            + "\n"
            + self.describe(first_repo)
        )

    @invariant()
    def a_sample_agrees(self) -> None:
        principals, repos = self.principals(), list(self.repos.values())
        found: list[tuple[Who, Repo | None, str]] = []
        for _ in range(SAMPLE if repos else 0):
            who, repo = self.rnd.choice(principals), self.rnd.choice(repos)
            problem = self.check(who, repo, self.rnd.choice(CHECKS))
            if problem:
                found.append((who, repo, problem))
        who, namespace = self.rnd.choice(principals), self.rnd.choice(self.namespaces())
        problem = self.check_creation(who, namespace)
        if problem:
            found.append((who, None, problem))
        self.report(found)

    def teardown(self) -> None:
        # NOTE: teardown runs in hypothesis' ``finally``; after a failed step the full
        # matrix would only bury the first disagreement under more of the same.
        if sys.exc_info()[1] is not None:
            return
        found: list[tuple[Who, Repo | None, str]] = []
        for who in self.principals():
            for repo in self.repos.values():
                found += [(who, repo, p) for k in CHECKS if (p := self.check(who, repo, k))]
            for namespace in self.namespaces():
                problem = self.check_creation(who, namespace)
                if problem:
                    found.append((who, None, problem))
        for repo in self.repos.values():
            problem = self.check_grants(repo) if repo.live else None
            if problem:
                found.append((ADMIN, repo, problem))
        self.report(found)


def test_the_live_server_agrees_with_the_access_model(live: Live) -> None:
    machine = type("LiveAccessMachine", (AccessMachine,), {"live": live})
    TALLY.clear()
    run_state_machine_as_test(machine, settings=SETTINGS)
    print("\n".join(f"{n:6d}  {what}" for what, n in sorted(TALLY.items())))
