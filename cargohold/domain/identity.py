"""Value types of identity and access: names, principals, roles, visibility.

Grammars (parsed at the edge; each rejects with its own typed ``InvalidInput`` before any
event exists). They follow Quay (see QUAY-API.md sections 2-4):

- ``AccountName``, a user or organisation name (one namespace for both):
  ``[a-z0-9]+(?:[._-][a-z0-9]+)*``, 2 to 255 characters (Quay's documented org rule,
  which it also applies to usernames).
- ``TeamName``: the same grammar ("team names follow the same regex as usernames").
- ``RobotShortName``, the part after ``+``: ``[a-z][a-z0-9_]{1,254}``. Stricter than an
  account name (no ``.`` or ``-``), so ``org+short`` can never be mistaken for a user.

None of the grammars admits ``/`` or ``+``, which is what makes a ``Principal`` name
(``alice``, ``acme/owners``, ``acme+builder``) unambiguous.

The log is the truth: the transcoder rebuilds these without re-checking the grammar, so
tightening a rule later never makes history unreadable.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from cargohold.domain.errors import (
    AccountNameInvalid,
    PermissionInvalid,
    RobotNameInvalid,
    ScopeInvalid,
    TeamNameInvalid,
)

ACCOUNT_NAME_MIN_LENGTH = 2
ACCOUNT_NAME_MAX_LENGTH = 255
_ACCOUNT_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_ROBOT_RE = re.compile(r"[a-z][a-z0-9_]{1,254}")
OWNERS_TEAM = "owners"


def _check_account_grammar(text: object, what: str, error: type[Exception]) -> str:
    if not isinstance(text, str):
        raise error(f"{what} must be a string")
    if not ACCOUNT_NAME_MIN_LENGTH <= len(text) <= ACCOUNT_NAME_MAX_LENGTH:
        raise error(
            f"{what} must be {ACCOUNT_NAME_MIN_LENGTH} to {ACCOUNT_NAME_MAX_LENGTH} "
            f"characters: {text[:200]!r}"
        )
    if _ACCOUNT_RE.fullmatch(text) is None:
        raise error(f"invalid {what}: {text[:200]!r}")
    return text


class AccountName(str):
    """A user or organisation name such as ``alice`` or ``acme``."""

    __slots__ = ()

    def __new__(cls, text: str) -> AccountName:
        return super().__new__(
            cls, _check_account_grammar(text, "account name", AccountNameInvalid)
        )

    def __repr__(self) -> str:
        return f"AccountName({str.__repr__(self)})"


class TeamName(str):
    """A team's name inside its organisation, such as ``owners``."""

    __slots__ = ()

    def __new__(cls, text: str) -> TeamName:
        return super().__new__(cls, _check_account_grammar(text, "team name", TeamNameInvalid))

    def __repr__(self) -> str:
        return f"TeamName({str.__repr__(self)})"


class RobotShortName(str):
    """A robot's short name, the ``builder`` of ``acme+builder``."""

    __slots__ = ()

    def __new__(cls, text: str) -> RobotShortName:
        if not isinstance(text, str) or _ROBOT_RE.fullmatch(text) is None:
            raise RobotNameInvalid(f"invalid robot short name: {str(text)[:200]!r}")
        return super().__new__(cls, text)

    def __repr__(self) -> str:
        return f"RobotShortName({str.__repr__(self)})"


class _OrderedEnum(enum.Enum):
    """An enum ordered by declaration: later members are stronger roles."""

    @property
    def rank(self) -> int:
        return list(type(self)).index(self)

    def __lt__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank >= other.rank


class RepositoryRole(_OrderedEnum):
    """Quay's repository roles; each includes the ones before it (READ < WRITE < ADMIN)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class TeamRole(_OrderedEnum):
    """Quay's team roles (MEMBER < CREATOR < ADMIN).

    MEMBER gets what the team is granted; CREATOR may also create repositories in the
    organisation; ADMIN administers the organisation and every repository in it.
    """

    MEMBER = "member"
    CREATOR = "creator"
    ADMIN = "admin"


class Visibility(enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"


class ApiScope(enum.Enum):
    """What an API token may be used for (Quay's OAuth scopes, QUAY-API.md section 1).

    A scope caps the roles of the token's owner; it never adds any. ``REPO_WRITE``
    implies ``REPO_READ`` and ``REPO_ADMIN`` implies both (``implied``).
    """

    REPO_READ = "repo:read"
    REPO_WRITE = "repo:write"
    REPO_ADMIN = "repo:admin"
    REPO_CREATE = "repo:create"
    ORG_ADMIN = "org:admin"
    USER_READ = "user:read"
    USER_ADMIN = "user:admin"
    SUPER_USER = "super:user"

    @classmethod
    def parse(cls, text: str) -> ApiScope:
        """Raises ``ScopeInvalid`` for anything but a known scope name."""
        try:
            return cls(text)
        except ValueError:
            raise ScopeInvalid(f"unknown scope: {str(text)[:100]!r}") from None

    def implied(self) -> frozenset[ApiScope]:
        """This scope and the ones it includes."""
        chains = {
            ApiScope.REPO_ADMIN: (ApiScope.REPO_WRITE, ApiScope.REPO_READ),
            ApiScope.REPO_WRITE: (ApiScope.REPO_READ,),
            ApiScope.USER_ADMIN: (ApiScope.USER_READ,),
        }
        return frozenset((self, *chains.get(self, ())))


def expand_scopes(scopes: frozenset[ApiScope] | tuple[ApiScope, ...]) -> frozenset[ApiScope]:
    """Every scope that ``scopes`` grant, implications included."""
    out: set[ApiScope] = set()
    for scope in scopes:
        out |= scope.implied()
    return frozenset(out)


def repository_role_cap(scopes: frozenset[ApiScope]) -> RepositoryRole | None:
    """The strongest repository role a token with ``scopes`` may exercise, or ``None``."""
    granted = expand_scopes(scopes)
    for scope, role in (
        (ApiScope.REPO_ADMIN, RepositoryRole.ADMIN),
        (ApiScope.REPO_WRITE, RepositoryRole.WRITE),
        (ApiScope.REPO_READ, RepositoryRole.READ),
    ):
        if scope in granted:
            return role
    return None


class NamespaceKind(enum.Enum):
    """What owns a namespace name: users and organisations share one set of names."""

    USER = "user"
    ORGANIZATION = "organization"


class PrincipalKind(enum.Enum):
    USER = "user"
    TEAM = "team"
    ROBOT = "robot"


@dataclass(frozen=True)
class Principal:
    """Who a permission is granted to, by a stable name.

    ``user`` -> ``alice``; ``team`` -> ``acme/owners`` (organisation/team); ``robot`` ->
    ``acme+builder`` (Quay's ``namespace+short`` form). Build through ``user``, ``team``,
    ``robot`` or ``parse``, which check the grammars; the bare constructor trusts its
    input (the transcoder uses it for what the log already holds).
    """

    kind: PrincipalKind
    name: str

    @classmethod
    def user(cls, name: str) -> Principal:
        return cls(PrincipalKind.USER, str(AccountName(name)))

    @classmethod
    def team(cls, organization: str, team: str) -> Principal:
        return cls(PrincipalKind.TEAM, f"{AccountName(organization)}/{TeamName(team)}")

    @classmethod
    def robot(cls, namespace: str, short_name: str) -> Principal:
        return cls(PrincipalKind.ROBOT, f"{AccountName(namespace)}+{RobotShortName(short_name)}")

    @classmethod
    def parse(cls, kind: PrincipalKind, name: str) -> Principal:
        """``name`` in its stable form for ``kind``; raises the component's typed error."""
        if not isinstance(name, str):
            raise PermissionInvalid("principal name must be a string")
        if kind is PrincipalKind.USER:
            return cls.user(name)
        separator = "/" if kind is PrincipalKind.TEAM else "+"
        namespace, found, short = name.partition(separator)
        if not found:
            error = TeamNameInvalid if kind is PrincipalKind.TEAM else RobotNameInvalid
            raise error(f"a {kind.value} name has the form ns{separator}name: {name[:200]!r}")
        if kind is PrincipalKind.TEAM:
            return cls.team(namespace, short)
        return cls.robot(namespace, short)

    @property
    def namespace(self) -> str:
        """The user's own name, or the organisation (namespace) a team or robot is in."""
        if self.kind is PrincipalKind.USER:
            return self.name
        separator = "/" if self.kind is PrincipalKind.TEAM else "+"
        return self.name.partition(separator)[0]

    @property
    def short_name(self) -> str:
        """The team or robot name inside its namespace; the user's name for a user."""
        if self.kind is PrincipalKind.USER:
            return self.name
        separator = "/" if self.kind is PrincipalKind.TEAM else "+"
        return self.name.partition(separator)[2]

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.kind.value, self.name)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"
