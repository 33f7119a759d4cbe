"""The last repositories a process wrote, kept in memory for its next command.

PERF: a repository with thousands of tags takes a while to load; the registry's commands
take it from here instead, fast-forwarded with the events stored after its version, so
it is never staler than a fresh load. An event saved by another process between that
read and the save makes the save fail on the version (the log's primary key), and the
unit of work retries with a fresh load, so a cached aggregate never decides wrongly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, project_aggregate

from cargohold.commands.unit_of_work import EventLog
from cargohold.domain.repository import Repository


class WarmRepositories:
    """The last ``size`` repositories saved by this process, kept for the next command.

    ``load`` hands an aggregate out (taking it out of the cache) fast-forwarded to the
    log's latest version, or loads it from the log; ``keep`` puts one back after it was
    saved. An aggregate whose command failed is simply never kept: it may hold events
    that were not saved. Thread-safe; the caller serialises commands per repository.
    """

    def __init__(self, log: EventLog, size: int = 256) -> None:
        self._log = log
        self._size = size
        self._items: OrderedDict[UUID, Repository] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, repo_id: UUID) -> Repository:
        """The repository as stored now. Raises ``AggregateNotFoundError``."""
        with self._lock:
            repo = self._items.pop(repo_id, None)
        if repo is None:
            loaded: Repository = self._log.repository.get(repo_id)
            return loaded
        # NOTE: each event checks that it follows the aggregate's version (mutate).
        newer = self._log.events.get(originator_id=repo_id, gt=repo.version)
        fresh: Repository | None = project_aggregate(repo, newer)
        if fresh is None:  # pragma: no cover - a stored stream never ends in None
            raise AggregateNotFoundError(repo_id)
        return fresh

    def keep(self, repo: Repository) -> None:
        """Cache ``repo``, whose every event is saved, for the next command."""
        if self._size <= 0 or repo.pending_events:
            return
        with self._lock:
            self._items[repo.id] = repo
            self._items.move_to_end(repo.id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
