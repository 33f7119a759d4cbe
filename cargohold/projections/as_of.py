"""The registry as it stood at a moment: its log, and the queries over its views.

*The registry as of T* is what the views showed at T: the projection of the longest
prefix of the log (in log order) whose events are all stamped (``hlc.wall_ms``) no later
than T. A prefix, not a filter: the log order is the order events were committed in,
so a prefix is a state the registry really was in, while a filter could pair a tag with
a manifest pushed a moment "later" on a worker whose clock ran behind. Events that
arrive after the cut, whatever their stamp (say, imported from another site), were not
in this registry at T and stay out.

Serving it (``serve --as-of``) splits every question in two:

- **what there was** (repositories, tags, manifests, teams, grants, the audit log)
  comes from the as-of views, with tags expiring by T's clock;
- **who may see it** is decided by the registry as it is *now*: the caller is
  authenticated against the live accounts and tokens, and authorised by the live rules
  (``effective_role`` on the live views). A user removed from a team since T, or a
  repository made private since, is not readable as of T either; for a repository
  deleted since, only its namespace's owner, organisation admins and superusers (the
  rules that need no repository row) may read its past.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from cargohold.domain import authorization
from cargohold.domain.identity import RepositoryRole
from cargohold.domain.ports import Database
from cargohold.domain.values import RepositoryName
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.identity_sql import starts_with
from cargohold.projections.merge import StreamHistory
from cargohold.projections.queries import RegistryQueries
from cargohold.projections.runner import EventSource

#: Repository names read per probe when filtering a listing by the live rules.
_PAGE = 200


class TimeBoundSource:
    """``source`` cut at the first event stamped after ``until_ms`` (see the module
    docstring). ``cut`` is that event's position once it has been met (the prefix is
    then final: the log only grows at its end); ``None`` while every event read so far
    is no later than ``until_ms``."""

    def __init__(self, source: EventSource, until_ms: int) -> None:
        self.source = source
        self.until_ms = until_ms
        self.cut: int | None = None

    def head(self) -> int:
        head = self.source.head()
        return head if self.cut is None else min(head, self.cut - 1)

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        if self.cut is not None:
            stop = self.cut - 1 if stop is None else min(stop, self.cut - 1)
            if after >= stop:
                return []
        batch = self.source.read(after, limit, stop)
        for index, (position, event) in enumerate(batch):
            if event.hlc.wall_ms > self.until_ms:
                self.cut = position
                return batch[:index]
        return batch

    def read_streams(self, ids: Sequence[UUID], through: int) -> Sequence[tuple[int, Any]]:
        """The geo fold's history (``merge.StreamHistory``), of the prefix only."""
        if not isinstance(self.source, StreamHistory):
            raise TypeError("the log under this view cannot be read by stream")
        if self.cut is not None:
            through = min(through, self.cut - 1)
        return self.source.read_streams(ids, through)

    def find_cut(self, after: int, batch_size: int = 5000) -> int | None:
        """Read on from ``after`` until the first event past ``until_ms``; its position,
        or ``None`` if there is none yet. (A build that stopped at the cut knows it;
        one resumed from its tracked position must look.)"""
        while self.cut is None:
            batch = self.read(after, batch_size)
            if not batch:
                break
            after = batch[-1][0]
        return self.cut


class AsOfRegistryQueries(RegistryQueries):
    """The registry views as of a moment, with tags expiring by that moment's clock.

    ``visibility`` is the exception, and answers from ``live``: it decides whether the
    anonymous may read (rule R7), which is a question about now (module docstring).
    """

    def __init__(self, db: Database, at_ms: int, live: RegistryQueries) -> None:
        super().__init__(db, now_ms=lambda: at_ms)
        self.at_ms = at_ms
        self.live = live

    def visibility(self, name: RepositoryName) -> str | None:
        return self.live.visibility(name)


class AsOfIdentityQueries(IdentityQueries):
    """Accounts, organisations, teams, robots and grants as of a moment (for display),
    with listings of readable repositories filtered by the live rules (``live``).

    Whoever authenticates or authorises uses ``live`` itself, never this (bootstrap
    wires ``Container.authorization`` and the ``Authenticator`` to ``live``)."""

    def __init__(self, db: Database, live: IdentityQueries) -> None:
        super().__init__(db)
        self.live = live

    def may_create_repository(self, caller: authorization.Requester, namespace: str) -> bool:
        return False  # NOTE: the past is read-only

    def readable_repositories(
        self,
        caller: authorization.Requester,
        after: str | None = None,
        limit: int | None = None,
        namespace: str | None = None,
    ) -> list[str]:
        """The repositories there were at the moment that the caller may read *now*
        (``live.effective_role`` at least READ), in name order.

        PERF: one live probe per repository of the moment; an as-of registry serves
        auditors, not fleets."""
        found: list[str] = []
        cursor = after or ""
        while limit is None or len(found) < limit:
            params: list[Any] = [cursor]
            sql = "SELECT name FROM repositories WHERE name > ?"
            if namespace is not None:
                sql += " AND " + starts_with("name", f"{namespace}/", params)
            params.append(_PAGE)
            page = [str(r[0]) for r in self.db.query(sql + " ORDER BY name LIMIT ?", params)]
            found.extend(name for name in page if self._live_may_read(caller, name))
            if len(page) < _PAGE:
                break
            cursor = page[-1]
        return found if limit is None else found[:limit]

    def _live_may_read(self, caller: authorization.Requester, name: str) -> bool:
        role = self.live.effective_role(caller, name)
        return role is not None and role >= RepositoryRole.READ
