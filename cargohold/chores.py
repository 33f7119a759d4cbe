"""Background chores of a serving process: the upload janitor, the tag-expiry sweeper,
the audit-chain sealer and the mirror worker.

Each runs on a thread of its own until its ``stop`` event is set, and takes only the
collaborators it uses. A failed pass is logged and retried at the next interval; none
skips work (the next pass sees whatever the failed one did not do). Every worker of
``serve --workers N`` runs each of them: they are safe side by side (see each one).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from cargohold.commands.mirror_sync import MirrorSync
from cargohold.commands.registry import RegistryService
from cargohold.commands.unit_of_work import Caller
from cargohold.commands.uploads import UploadService
from cargohold.domain.errors import DomainError
from cargohold.domain.values import Actor, RepositoryName
from cargohold.projections.audit.chain import AuditChain
from cargohold.projections.mirrors import MirrorQueries
from cargohold.projections.queries import RegistryQueries

log = logging.getLogger(__name__)


def janitor(uploads: UploadService, expiry_seconds: float, stop: threading.Event) -> None:
    """Remove abandoned uploads once they are older than ``expiry_seconds``."""
    interval = max(1.0, min(expiry_seconds / 4, 300.0))
    while not stop.wait(interval):
        try:
            removed = uploads.purge_expired()
            if removed:
                log.info("removed %d expired uploads", removed)
        except Exception:  # NOTE: a failed sweep is retried next interval
            log.exception("upload janitor failed")


#: How often the tag sweeper looks for expirations that have passed.
TAG_SWEEP_INTERVAL_SECONDS = 15.0


def sweep_expired_tags(
    queries: RegistryQueries, registry: RegistryService, site_id: uuid.UUID
) -> int:
    """Record a ``TagExpired`` (system actor) for every tag whose expiration has passed;
    returns how many repositories were swept. Readers hide such tags already: this
    only puts the expiry into the log, so that history and audit show it.

    Safe on several workers and nodes at once (recording is idempotent)."""
    caller = Caller(Actor.system(), "tag-expiry")
    swept = 0
    for name in queries.repositories_with_due_expirations(site_id=str(site_id)):
        try:
            registry.expire_tags(name, caller)
            swept += 1
        except DomainError:  # NOTE: deleted meanwhile, or busy: the next pass sees it
            log.warning("could not record tag expiry in %s", name, exc_info=True)
    return swept


def tag_sweeper(
    queries: RegistryQueries,
    registry: RegistryService,
    site_id: uuid.UUID,
    stop: threading.Event,
) -> None:
    """``sweep_expired_tags`` every ``TAG_SWEEP_INTERVAL_SECONDS``."""
    while not stop.wait(TAG_SWEEP_INTERVAL_SECONDS):
        try:
            sweep_expired_tags(queries, registry, site_id)
        except Exception:  # NOTE: a failed sweep is retried next interval
            log.exception("tag expiry sweep failed")


SEAL_INTERVAL_SECONDS = 1.0


def sealer(chain: AuditChain, stop: threading.Event) -> None:
    """Seal new events into the audit chain about once a second (see projections/audit/chain.py).

    Every worker runs one; they take turns by compare-and-set on the chain's head, and
    one that finds another sealing leaves the backlog to it until its next pass."""
    while not stop.wait(SEAL_INTERVAL_SECONDS):
        try:
            chain.seal(yield_on_race=True)
        except Exception:  # NOTE: a failed pass is retried; nothing is skipped
            log.exception("sealing the audit chain failed")


def sync_due_mirrors(
    mirrors: MirrorQueries,
    sync: MirrorSync,
    now_ms: int,
    only: str | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run every mirror sync that is due at ``now_ms`` (or only ``only``'s); returns how
    many ran. Safe on several workers and nodes at once: each sync is claimed first, and
    a mirror another worker claimed is skipped."""
    ran = 0
    for name in mirrors.due(now_ms):
        if stop is not None and stop.is_set():
            break
        if only is not None and name != only:
            continue
        try:
            outcome = sync.run(RepositoryName(name), now_ms)
        except DomainError:  # NOTE: deleted or busy meanwhile: the next pass sees it
            log.warning("could not sync the mirror of %s", name, exc_info=True)
            continue
        if outcome is not None:
            ran += 1
            log.info(
                "mirror %s: %s (%d synced, %d failed, %d removed, %d bytes)%s",
                name,
                outcome.status,
                outcome.synced,
                outcome.failed,
                outcome.removed,
                outcome.bytes,
                f": {outcome.message}" if outcome.message else "",
            )
    return ran


def mirror_worker(
    mirrors: MirrorQueries,
    sync: MirrorSync,
    now_ms: Callable[[], int],
    interval: float,
    stop: threading.Event,
) -> None:
    """``sync_due_mirrors`` every ``interval`` seconds (a sync-now waits at most that)."""
    while not stop.wait(interval):
        try:
            sync_due_mirrors(mirrors, sync, now_ms(), stop=stop)
        except Exception:  # NOTE: a failed pass is retried next interval
            log.exception("the mirror worker failed")
