"""Two lanes of request threads: small reads apart from everything else."""

from __future__ import annotations

from typing import Any

from cargohold.http.server.inline_reads import InlineReads


def _is_quick_read(method: str, path: str) -> bool:
    """Whether a request is a small read: answered from the views (or a small file) in
    about a millisecond of CPU, never waiting on its client or on a lock. Blob GETs are
    not (they stream for as long as the client reads), nor is any write, nor the token
    endpoint (a first login hashes a password: tens of milliseconds of CPU)."""
    if method == "HEAD":
        return True
    return method == "GET" and "/blobs/" not in path and not path.startswith("/v2/auth")


class LaneDispatcher:
    """Two waitress task dispatchers in one: small reads on a few threads, everything
    else (uploads, blob downloads, writes) on the usual pool.

    PERF: waitress serves each request on one of its ``threads``; with 8 busy threads
    they hand the GIL to each other at every sqlite call and socket operation (~320 futex
    calls per manifest GET, measured with strace; 5-8 with these lanes). But one thread
    alone would make every client wait behind a slow blob download or upload. So small
    reads, which never block on a client, queue for ``read_threads`` (1 by default: no
    handoffs between reading threads; measured, 2 and 4 were slower), and the long requests keep a
    pool of their own (``threads``), whose threads sleep while there is nothing long to
    do. A channel is re-queued for each of its requests, so a keep-alive connection
    moves between the lanes as its requests do. NOTE: ``_dispatcher`` is ``create_server``'s
    test shim (waitress 3.0): any object with ``add_task``, ``set_thread_count``, ``shutdown``.
    """

    def __init__(self, read_threads: int, threads: int, inline: InlineReads | None = None) -> None:
        from waitress.task import ThreadedTaskDispatcher

        self.inline = inline  # tiny reads answered on the loop itself (http/server/inline_reads.py)
        self.reads = ThreadedTaskDispatcher()
        self.others = ThreadedTaskDispatcher()
        self.reads.set_thread_count(read_threads)
        self.others.set_thread_count(threads)

    def add_task(self, task: Any) -> None:
        request = task.requests[0] if getattr(task, "requests", None) else None
        method, path = ("", "") if request is None else (request.command, request.path)
        quick = request is not None and _is_quick_read(str(method or ""), str(path or ""))
        lane = self.reads if quick else self.others
        if self.inline is not None and self.inline.take(task, method, path, lane):
            return
        lane.add_task(task)

    def set_thread_count(self, count: int) -> None:
        # NOTE: waitress calls this only for a dispatcher of its own making.
        self.others.set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        # Both lanes stop taking work first, so their threads wind down together.
        self.reads.set_thread_count(0)
        self.others.set_thread_count(0)
        done = self.reads.shutdown(cancel_pending, timeout)
        return bool(self.others.shutdown(cancel_pending, timeout)) and bool(done)
