"""``cargohold serve``: the app, the background chores and the waitress server, in one
process or in forked workers.

With ``--workers N`` the parent binds the socket, migrates the stores once, then forks
(``http/server/workers.py``); each worker opens its own connections (none cross a fork)
and its own projection poller. Workers stay consistent with each other because every
read model lives in the shared database and every command waits for its own events to
be projected there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from cargohold import chores
from cargohold.adapters.geo_peer import PeerFeed
from cargohold.bootstrap import stores
from cargohold.bootstrap.container import Container, bootstrap
from cargohold.bootstrap.stores import StartupError
from cargohold.commands.unit_of_work import MAX_CLOCK_AHEAD_MS
from cargohold.config import Settings
from cargohold.http.app import create_app
from cargohold.http.server import listening, serve, workers
from cargohold.projections.origins import StreamOrigins
from cargohold.replay.geo_blobs import BlobFetcher, queue_missing
from cargohold.replay.geo_replicator import Replicator, lease_owner

log = logging.getLogger(__name__)


def listen(settings: Settings) -> socket.socket:
    """The listening socket of ``settings.listen``; ``StartupError`` if it cannot be bound."""
    try:
        return listening.bind(settings)
    except OSError as e:
        raise StartupError(f"cannot listen on {settings.listen}: {e.strerror or e}") from e


def serve_with(container: Container, sock: socket.socket, parent: int | None = None) -> None:
    """Serve ``container``'s registry on ``sock`` in this process until SIGTERM or SIGINT
    (or, for a worker, until its ``parent`` supervisor is gone). On a clean stop the
    buffered pulls and logins are written and, unless read-only, the audit chain sealed."""
    server = serve.create_server(create_app(container), sock, container.settings)
    stop = threading.Event()
    # NOTE: the live views stay current also when serving a past moment: they decide
    # who may read it (revocations take effect). Pulls and logins are recorded.
    container.runner.start()
    container.access_log.start()
    if not container.read_only:  # the writers: the log's own server does their work
        _start_chores(container, stop)
    serve.run(server, stop, parent)
    # Write the buffered pulls and logins: a clean stop loses none.
    container.access_log.close()
    if container.read_only:
        return
    try:  # seal what was written last, so a clean stop leaves nothing unsealed
        container.audit_chain.seal()
    except Exception:
        log.exception("sealing the audit chain at shutdown failed")


def _start_chores(container: Container, stop: threading.Event) -> None:
    """The janitor, the sealer, the tag sweeper, the mirror worker and a replicator per
    geo peer, each on a daemon thread until ``stop``."""
    expiry = container.settings.upload_expiry_seconds
    chore_list: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
        (chores.janitor, (container.uploads, expiry)),
        (chores.sealer, (container.audit_chain,)),
        (chores.tag_sweeper, (container.queries, container.registry, container.site_id)),
    ]
    if container.settings.mirror_worker:
        poll = float(container.settings.mirror_poll_seconds)
        chore_list.append(
            (
                chores.mirror_worker,
                (container.mirror_queries, container.mirror_sync, container.queries.now_ms, poll),
            )
        )
    settings = container.settings
    replicators: list[Replicator] = []
    for url in settings.peer_urls:
        replicator = Replicator(
            PeerFeed(url, settings.peer_token),
            container.log,
            container.site_id,
            container.runner,
            container.registry.clock,
            container.peer_links,
            max_clock_ahead_ms=MAX_CLOCK_AHEAD_MS,
            names=StreamOrigins(container.views_db, container.site_id),
            wanted=queue_missing(container.blobs, container.blob_backlog),
            fold=container.runner.nudge,
            fold_elsewhere=settings.workers > 1,
        )
        replicators.append(replicator)
        chore_list.append((replicator.run, ()))
    if replicators:
        fetcher = BlobFetcher(
            container.blobs,
            container.blob_backlog,
            container.geo_feeds,
            lease_owner(),
            parts=stores.data_dir(container.settings).geo_fetch,
        )
        chore_list.append((fetcher.run, ()))
    for chore, args in chore_list:
        threading.Thread(target=chore, args=(*args, stop), daemon=True).start()


def serve_workers(settings: Settings, sock: socket.socket) -> int:
    """Fork ``settings.workers`` workers on ``sock`` and supervise them; each opens its
    own container over the stores the parent migrated, and serves until stopped."""
    parent = os.getpid()

    def run_worker(index: int) -> None:
        container = bootstrap(settings, create_tables=False)
        try:
            serve_with(container, sock, parent=parent)
        finally:
            container.close()

    return workers.supervise(settings.workers, run_worker)
