"""Query facade over the identity and permission views: who exists, who belongs where, and
who may do what. Never loads aggregates; each method is one read transaction.

``effective_role``, ``may_create_repository`` and ``readable_repositories`` answer the
questions of ``cargohold.domain.authorization`` (rules R1-R7 and C1-C3) in SQL, and must
give exactly its answers: a property test compares the two over random facts. How each
rule reads the views:

====  =====================================================================================
R1    ``caller.superuser`` (the caller object says so; no lookup)
R2    the caller's name is the repository's namespace (no lookup)
R3    a ``team_members`` row of the caller in a team of the namespace whose ``teams.role``
      is ``admin``
R4    a ``repository_permissions`` row for the user
R5    a ``repository_permissions`` row for ``<org>/<team>`` of a team of the namespace the
      caller is in
R6    the robot is of the namespace, has a ``robots`` row, and a ``repository_permissions``
      row
R7    ``repositories.visibility`` is ``public``
C3    a ``team_members`` row of the caller in a team of the namespace whose role is
      ``creator`` or ``admin``
====  =====================================================================================

A repository that does not exist (or was deleted: the projection removes its rows) is
private and has no grants, so only R1-R3 give anything on it.

Only organisations have robots, in the model (R6 needs the organisation's facts) as in
the views (the ``robots`` table), so a grant to a robot of a user's namespace gives nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cargohold.domain import authorization
from cargohold.domain.identity import (
    ApiScope,
    NamespaceKind,
    Principal,
    PrincipalKind,
    RepositoryRole,
    TeamRole,
)
from cargohold.domain.ports import Database
from cargohold.projections.identity_sql import (
    CREATOR_SQL,
    PUBLIC_SQL,
    ROBOT_ROLE_SQL,
    USER_ROLE_SQL,
    readable_condition,
    starts_with,
)


@dataclass(frozen=True)
class AccountRow:
    name: str
    email: str
    superuser: bool
    created_at: str


@dataclass(frozen=True)
class TeamRow:
    org: str
    name: str
    role: TeamRole
    description: str
    member_count: int


@dataclass(frozen=True)
class RobotRow:
    namespace: str
    short_name: str
    description: str
    created_at: str

    @property
    def full_name(self) -> str:
        """Quay's ``namespace+short`` form, the robot principal's name."""
        return f"{self.namespace}+{self.short_name}"


@dataclass(frozen=True)
class ApiTokenRow:
    token_id: str
    owner: str
    scopes: frozenset[ApiScope]
    expires_at: datetime
    description: str
    created_at: str


def _namespace_of(repository: str) -> str:
    return repository.partition("/")[0]


def _paging(sql: str, params: list[Any], limit: int | None) -> str:
    if limit is None:
        return sql
    params.append(limit)
    return sql + " LIMIT ?"


def _strongest(rows: list[tuple[Any, ...]]) -> RepositoryRole | None:
    roles = [RepositoryRole(r[0]) for r in rows]
    return max(roles) if roles else None


def _grants(rows: list[tuple[Any, ...]]) -> list[tuple[Principal, RepositoryRole]]:
    grants = [(Principal(PrincipalKind(r[0]), str(r[1])), RepositoryRole(r[2])) for r in rows]
    return sorted(grants, key=lambda grant: grant[0].sort_key)


class IdentityQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- accounts and namespaces -------------------------------------------------------

    def account(self, name: str) -> AccountRow | None:
        # PERF: one statement needs no BEGIN/COMMIT around it (``Database.query``); this
        # runs on every request with a bearer token.
        rows = self.db.query(
            "SELECT name, email, superuser, created_at FROM accounts WHERE name = ?", (name,)
        )
        return _account(rows[0]) if rows else None

    def accounts(self, after: str | None = None, limit: int | None = None) -> list[AccountRow]:
        """Accounts in name order, after ``after``, at most ``limit``."""
        params: list[Any] = [after or ""]
        sql = _paging(
            "SELECT name, email, superuser, created_at FROM accounts WHERE name > ? ORDER BY name",
            params,
            limit,
        )
        with self.db.transaction(write=False) as c:
            return [_account(r) for r in c.execute(sql, params).fetchall()]

    def has_accounts(self) -> bool:
        with self.db.transaction(write=False) as c:
            return c.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is not None

    def namespace_kind(self, name: str) -> NamespaceKind | None:
        """Who holds the namespace ``name``, or ``None`` when it is unclaimed."""
        with self.db.transaction(write=False) as c:
            row = c.execute("SELECT kind FROM namespaces WHERE name = ?", (name,)).fetchone()
        return None if row is None else NamespaceKind(row[0])

    # -- organisations -----------------------------------------------------------------

    def organization_exists(self, name: str) -> bool:
        with self.db.transaction(write=False) as c:
            row = c.execute("SELECT 1 FROM organizations WHERE name = ?", (name,)).fetchone()
        return row is not None

    def organizations(self, after: str | None = None, limit: int | None = None) -> list[str]:
        """Organisation names in order, after ``after``, at most ``limit``."""
        params: list[Any] = [after or ""]
        sql = _paging("SELECT name FROM organizations WHERE name > ? ORDER BY name", params, limit)
        with self.db.transaction(write=False) as c:
            return [str(r[0]) for r in c.execute(sql, params).fetchall()]

    def organizations_of(self, user: str) -> list[str]:
        """The organisations ``user`` is a member of, in name order."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT org FROM org_members WHERE username = ? ORDER BY org", (user,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def org_members(self, org: str) -> list[str]:
        """Members of ``org`` in name order (empty for an unknown organisation)."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT username FROM org_members WHERE org = ? ORDER BY username", (org,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def belongs_to(self, caller: authorization.Requester, org: str) -> bool:
        """Whether the caller is a member of ``org`` (in one of its teams) or one of its
        robots (a pull-through cache's organisation lets them all pull)."""
        who = caller.principal
        if who is None:
            return False
        if who.kind is PrincipalKind.ROBOT:
            return who.namespace == org and self.robot(org, who.short_name) is not None
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT 1 FROM org_members WHERE org = ? AND username = ?", (org, who.name)
            ).fetchone()
        return row is not None

    def teams(self, org: str) -> list[TeamRow]:
        """Teams of ``org`` in name order."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(_TEAMS_SQL + " WHERE t.org = ? ORDER BY t.team", (org,)).fetchall()
        return [_team(r) for r in rows]

    def team(self, org: str, team: str) -> TeamRow | None:
        with self.db.transaction(write=False) as c:
            row = c.execute(_TEAMS_SQL + " WHERE t.org = ? AND t.team = ?", (org, team)).fetchone()
        return None if row is None else _team(row)

    def team_members(self, org: str, team: str) -> list[str]:
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT username FROM team_members WHERE org = ? AND team = ? ORDER BY username",
                (org, team),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def teams_of(self, org: str, user: str) -> list[str]:
        """The teams of ``org`` that ``user`` is in, in name order."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT team FROM team_members WHERE org = ? AND username = ? ORDER BY team",
                (org, user),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def robots(self, namespace: str) -> list[RobotRow]:
        """Robots of ``namespace`` in short-name order."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT namespace, short_name, description, created_at FROM robots "
                "WHERE namespace = ? ORDER BY short_name",
                (namespace,),
            ).fetchall()
        return [RobotRow(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def robot(self, namespace: str, short_name: str) -> RobotRow | None:
        with self.db.transaction(write=False) as c:
            r = c.execute(
                "SELECT namespace, short_name, description, created_at FROM robots "
                "WHERE namespace = ? AND short_name = ?",
                (namespace, short_name),
            ).fetchone()
        return None if r is None else RobotRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]))

    def robot_token_hash(self, namespace: str, short_name: str) -> str | None:
        """The robot's current token hash, or ``None`` when there is no such robot."""
        with self.db.transaction(write=False) as c:
            row = c.execute(
                "SELECT token_hash FROM robots WHERE namespace = ? AND short_name = ?",
                (namespace, short_name),
            ).fetchone()
        return None if row is None else str(row[0])

    def default_permissions(self, org: str) -> list[tuple[Principal, RepositoryRole]]:
        """The grants every new repository of ``org`` starts with, by ``Principal.sort_key``."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT principal_kind, principal_name, role FROM default_permissions "
                "WHERE org = ?",
                (org,),
            ).fetchall()
        return _grants(rows)

    # -- API tokens --------------------------------------------------------------------

    def api_token_by_hash(self, token_hash: str) -> ApiTokenRow | None:
        """The live (not revoked) token with this hash. Expiry is the caller's to check."""
        with self.db.transaction(write=False) as c:
            row = c.execute(_TOKENS_SQL + " WHERE token_hash = ?", (token_hash,)).fetchone()
        return None if row is None else _token(row)

    def api_tokens_of(self, owner: str) -> list[ApiTokenRow]:
        """``owner``'s live tokens, in the order they were issued."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                _TOKENS_SQL + " WHERE owner = ? ORDER BY position, token_id", (owner,)
            ).fetchall()
        return [_token(r) for r in rows]

    # -- grants ------------------------------------------------------------------------

    def repository_grants(self, repository: str) -> list[tuple[Principal, RepositoryRole]]:
        """Explicit grants on ``repository``, by ``Principal.sort_key``."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT principal_kind, principal_name, role FROM repository_permissions "
                "WHERE repository = ?",
                (repository,),
            ).fetchall()
        return _grants(rows)

    def grants_of(self, principal: Principal) -> list[tuple[str, RepositoryRole]]:
        """``principal``'s explicit grants as (repository name, role), in name order."""
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT repository, role FROM repository_permissions "
                "WHERE principal_kind = ? AND principal_name = ? ORDER BY repository",
                (principal.kind.value, principal.name),
            ).fetchall()
        return [(str(r[0]), RepositoryRole(r[1])) for r in rows]

    def grants_in_namespace_for_user(self, namespace: str, user: str) -> list[str]:
        """Repositories of ``namespace`` where ``user`` holds an explicit user grant, in
        name order (what to revoke when the user leaves an organisation)."""
        params: list[Any] = [PrincipalKind.USER.value, user]
        prefix = starts_with("repository", f"{namespace}/", params)
        with self.db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT repository FROM repository_permissions "
                f"WHERE principal_kind = ? AND principal_name = ? AND {prefix} "
                "ORDER BY repository",
                params,
            ).fetchall()
        return [str(r[0]) for r in rows]

    # -- authorization -----------------------------------------------------------------

    def effective_role(
        self, caller: authorization.Requester, repository: str
    ) -> RepositoryRole | None:
        """The caller's role on ``repository`` by rules R1-R7, or ``None``.

        One indexed query at most (none for R1 and R2).
        """
        namespace = _namespace_of(repository)
        who = caller.principal
        params: tuple[str, ...]
        if who is not None and who.kind is PrincipalKind.USER:
            if caller.superuser or who.name == namespace:  # R1, R2
                return RepositoryRole.ADMIN
            user = who.name
            sql = USER_ROLE_SQL
            params = (user, namespace, repository, user, namespace, repository, user, repository)
        elif who is not None and who.namespace == namespace:  # a robot of the namespace
            sql = ROBOT_ROLE_SQL
            params = (namespace, who.short_name, repository, who.name, repository)
        else:  # anonymous, or a robot of another namespace: R7 only
            sql, params = PUBLIC_SQL, (repository,)
        return _strongest(self.db.query(sql, params))  # PERF: one statement, as ``account``

    def may_create_repository(self, caller: authorization.Requester, namespace: str) -> bool:
        """May the caller create a repository in ``namespace``? Rules C1-C3."""
        who = caller.principal
        if who is None or who.kind is not PrincipalKind.USER:
            return False
        if caller.superuser or who.name == namespace:  # C1, C2
            return True
        with self.db.transaction(write=False) as c:  # C3
            row = c.execute(CREATOR_SQL, (who.name, namespace)).fetchone()
        return row is not None

    def readable_repositories(
        self,
        caller: authorization.Requester,
        after: str | None = None,
        limit: int | None = None,
        namespace: str | None = None,
    ) -> list[str]:
        """Live repositories on which the caller's ``effective_role`` is at least READ, in
        name order, after ``after``, at most ``limit``, only of ``namespace`` if given.

        One query: the rules are conditions on each repository row, each an indexed probe.
        """
        params: list[Any] = [after or ""]
        sql = "SELECT r.name FROM repositories r WHERE r.name > ?"
        if namespace is not None:
            sql += " AND " + starts_with("r.name", f"{namespace}/", params)
        sql += readable_condition(caller, params)
        sql = _paging(sql + " ORDER BY r.name", params, limit)
        with self.db.transaction(write=False) as c:
            return [str(r[0]) for r in c.execute(sql, params).fetchall()]


# -- SQL ---------------------------------------------------------------------------------

_TEAMS_SQL = (
    "SELECT t.org, t.team, t.role, t.description, "
    "(SELECT COUNT(*) FROM team_members m WHERE m.org = t.org AND m.team = t.team) "
    "FROM teams t"
)
_TOKENS_SQL = "SELECT token_id, owner, scopes, expires_at, description, created_at FROM api_tokens"


def _account(row: tuple[Any, ...]) -> AccountRow:
    return AccountRow(str(row[0]), str(row[1]), bool(row[2]), str(row[3]))


def _team(row: tuple[Any, ...]) -> TeamRow:
    return TeamRow(str(row[0]), str(row[1]), TeamRole(row[2]), str(row[3]), int(row[4]))


def _token(row: tuple[Any, ...]) -> ApiTokenRow:
    return ApiTokenRow(
        token_id=str(row[0]),
        owner=str(row[1]),
        scopes=frozenset(ApiScope(s) for s in str(row[2]).split()),
        expires_at=datetime.fromisoformat(str(row[3])),
        description=str(row[4]),
        created_at=str(row[5]),
    )
