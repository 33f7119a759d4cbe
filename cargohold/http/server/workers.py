"""``--workers N``: N forked processes serving one listening socket, supervised.

One waitress process is bound by the GIL, so N processes accept on the same socket,
bound by the parent before it forks. The parent forwards SIGTERM/SIGINT to its workers
and restarts a worker that dies unexpectedly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


_STOPS = {signal.SIGTERM, signal.SIGINT}


def supervise(workers: int, run_worker: Callable[[int], None]) -> int:
    """Fork ``workers`` processes, each running ``run_worker(index)`` (with the default
    SIGTERM and SIGINT handlers) and then exiting: 0, or 1 if it raised (logged). Waits
    until every worker has exited after SIGTERM or SIGINT, which it forwards to them;
    a worker that exits on its own meanwhile is restarted. Returns 0."""
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        # NOTE: the signals wait while the worker is made. One arriving in the child
        # before its handlers are reset would run the supervisor's ``on_signal`` there
        # (which signals the siblings) and leave the worker serving for ever; one
        # arriving in the supervisor before the child is in ``children`` would not be
        # forwarded to it, and the supervisor would wait for it for ever.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
            else:
                children[pid] = index
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
        if pid == 0:  # the worker
            code = 0
            try:
                run_worker(index)
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for index in range(workers):
        if not stopping:
            spawn(index)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if pid not in children:
            continue
        index = children.pop(pid)
        if stopping:
            continue
        log.warning("worker %d exited (status %d); restarting it", index, status)
        time.sleep(0.5)
        spawn(index)
    return 0
