"""The authorization rules of ``cargohold.domain.authorization`` as SQL over the views.

``IdentityQueries`` runs these; its docstring says how each rule (R1-R7, C1-C3) reads the
views. Statements use ``?`` placeholders, and never a literal ``?`` or ``%`` (see
``adapters/postgres.py``): that is why prefixes are compared with ``substr`` and not ``LIKE``.
"""

from __future__ import annotations

from typing import Any

from cargohold.domain import authorization
from cargohold.domain.identity import PrincipalKind

# ``substr(name, 1, len) = prefix``: whether a name starts with ``prefix`` (LIKE would
# need escaping of ``_`` and is case-insensitive on SQLite). The CAST pins the parameter's
# type on PostgreSQL.
_STARTS_WITH = "substr({column}, 1, CAST(? AS INTEGER)) = ?"
# Whether a repository (column ``r.name``) is in team member ``tm``'s organisation.
_IN_TEAM_ORG = "substr(r.name, 1, length(tm.org) + 1) = tm.org || '/'"


def starts_with(column: str, prefix: str, params: list[Any]) -> str:
    """The condition "``column`` starts with ``prefix``", its parameters added to ``params``."""
    params.extend((len(prefix), prefix))
    return _STARTS_WITH.format(column=column)


PUBLIC_SQL = "SELECT 'read' FROM repositories WHERE name = ? AND visibility = 'public'"

# Parameters: user, namespace (R3); repository, user, namespace (R5); repository, user
# (R4); repository (R7).
USER_ROLE_SQL = (
    "SELECT 'admin' FROM team_members tm JOIN teams t ON t.org = tm.org AND t.team = tm.team "
    "WHERE tm.username = ? AND tm.org = ? AND t.role = 'admin' "
    "UNION ALL "
    "SELECT p.role FROM team_members tm JOIN repository_permissions p "
    "ON p.repository = ? AND p.principal_kind = 'team' "
    "AND p.principal_name = tm.org || '/' || tm.team "
    "WHERE tm.username = ? AND tm.org = ? "
    "UNION ALL "
    "SELECT role FROM repository_permissions "
    "WHERE repository = ? AND principal_kind = 'user' AND principal_name = ? "
    "UNION ALL " + PUBLIC_SQL
)

# Parameters: namespace, short name, repository, robot name (R6); repository (R7).
ROBOT_ROLE_SQL = (
    "SELECT p.role FROM repository_permissions p JOIN robots b "
    "ON b.namespace = ? AND b.short_name = ? "
    "WHERE p.repository = ? AND p.principal_kind = 'robot' AND p.principal_name = ? "
    "UNION ALL " + PUBLIC_SQL
)

# Parameters: user, namespace (C3).
CREATOR_SQL = (
    "SELECT 1 FROM team_members tm JOIN teams t ON t.org = tm.org AND t.team = tm.team "
    "WHERE tm.username = ? AND tm.org = ? AND t.role IN ('creator', 'admin')"
)


def readable_condition(caller: authorization.Requester, params: list[Any]) -> str:
    """The SQL condition on ``repositories r`` for ``effective_role >= READ``."""
    who = caller.principal
    if who is None:  # R7
        return " AND r.visibility = 'public'"
    if who.kind is PrincipalKind.ROBOT:  # R7, R6
        own = starts_with("r.name", f"{who.namespace}/", params)
        params.extend((who.namespace, who.short_name, who.name))
        return (
            f" AND (r.visibility = 'public' OR ({own} "
            "AND EXISTS (SELECT 1 FROM robots b WHERE b.namespace = ? AND b.short_name = ?) "
            "AND EXISTS (SELECT 1 FROM repository_permissions p WHERE p.repository = r.name "
            "AND p.principal_kind = 'robot' AND p.principal_name = ?)))"
        )
    if caller.superuser:  # R1
        return ""
    own = starts_with("r.name", f"{who.name}/", params)  # R2
    params.extend((who.name, who.name, who.name))
    return (
        f" AND (r.visibility = 'public' OR {own} "
        # R4
        "OR EXISTS (SELECT 1 FROM repository_permissions p WHERE p.repository = r.name "
        "AND p.principal_kind = 'user' AND p.principal_name = ?) "
        # R3
        "OR EXISTS (SELECT 1 FROM team_members tm JOIN teams t "
        "ON t.org = tm.org AND t.team = tm.team "
        f"WHERE tm.username = ? AND t.role = 'admin' AND {_IN_TEAM_ORG}) "
        # R5
        "OR EXISTS (SELECT 1 FROM team_members tm JOIN repository_permissions p "
        "ON p.repository = r.name AND p.principal_kind = 'team' "
        "AND p.principal_name = tm.org || '/' || tm.team "
        f"WHERE tm.username = ? AND {_IN_TEAM_ORG}))"
    )
