"""How /api/v1 renders things: dates, avatars, and the objects several resources share
(users, robots, team members, repository references). Pure functions of view rows.

Dates are Quay's RFC 2822 strings (``email.utils.formatdate(..., usegmt=False)``, e.g.
``"Wed, 21 Aug 2024 16:02:54 -0000"``). Avatars are computed from the name alone: no
e-mail hashing, no external service, the same object on every node.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from cargohold.domain.identity import RepositoryRole
from cargohold.projections.identity_queries import AccountRow, RobotRow

# Quay's avatar palette (data/avatar.py), so colours look familiar.
_COLORS = (
    "#969696",
    "#aec7e8",
    "#ff7f0e",
    "#ffbb78",
    "#2ca02c",
    "#98df8a",
    "#d62728",
    "#ff9896",
    "#9467bd",
    "#c5b0d5",
    "#8c564b",
    "#c49c94",
    "#e377c2",
    "#f7b6d2",
    "#7f7f7f",
    "#c7c7c7",
    "#bcbd22",
    "#1f77b4",
    "#17becf",
    "#9edae5",
    "#393b79",
    "#5254a3",
    "#6b6ecf",
    "#9c9ede",
    "#9ecae1",
    "#31a354",
    "#b5cf6b",
    "#a1d99b",
)


def avatar(name: str, kind: str) -> dict[str, str]:
    """``{"name", "hash", "color", "kind"}``; ``kind`` is user, org, team or robot."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return {
        "name": name,
        "hash": digest,
        "color": _COLORS[int(digest[:8], 16) % len(_COLORS)],
        "kind": kind,
    }


def rfc2822(moment: str | datetime | None) -> str | None:
    """An ISO 8601 string (as the views hold) or a datetime, in Quay's date form."""
    if moment is None or moment == "":
        return None
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return formatdate(when.timestamp(), usegmt=False)


def short_repository(repository: str) -> str:
    """``acme/web`` -> ``web`` (Quay lists repositories of a namespace by short name)."""
    return repository.partition("/")[2]


def superuser_user(row: AccountRow) -> dict[str, Any]:
    """A user as ``/superuser/users`` shows it."""
    return {
        "kind": "user",
        "name": row.name,
        "username": row.name,
        "email": row.email,
        "verified": True,
        "avatar": avatar(row.name, "user"),
        "super_user": row.superuser,
        "global_readonly_super_user": False,
        "enabled": True,
    }


def robot(row: RobotRow) -> dict[str, Any]:
    """A robot, never with its token (only its hash is stored)."""
    return {
        "name": row.full_name,
        "created": rfc2822(row.created_at),
        "last_accessed": None,
        "description": row.description,
        "unstructured_metadata": {},
    }


def team_member(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "user",
        "is_robot": False,
        "avatar": avatar(name, "user"),
        "invited": False,
    }


def repository_permission(repository: str, role: RepositoryRole, is_public: bool) -> dict[str, Any]:
    """An entry of a team's or robot's ``permissions`` list."""
    return {
        "repository": {"name": short_repository(repository), "is_public": is_public},
        "role": role.value,
    }
