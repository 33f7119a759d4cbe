"""Serving: waitress on one listening socket, in one process or in N forked workers.

One waitress process is bound by the GIL, so ``--workers N`` forks N processes that
accept on the same socket. The parent binds the socket, migrates the stores once, then
forks; each worker opens its own connections (none cross a fork) and its own projection
poller. The parent forwards SIGTERM/SIGINT and restarts a worker that dies unexpectedly.
Workers stay consistent with each other because every read model lives in the shared
database and every command waits for its own events to be projected there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from cargohold import chores
from cargohold.bootstrap import Container, bootstrap
from cargohold.config import Settings
from cargohold.http.server.inline_reads import InlineReads, serves_inline
from cargohold.http.server.sendfile import sending_files
from cargohold.http.server.streaming_bodies import streaming_channel

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# waitress's buffer sizes (see ``serve_with``): bytes per recv of a request, and the
# queued-response bounds per connection. The overflow leaves room above the watermark
# for one more chunk (blob stores yield 1 MiB), so a queued response stays in memory:
# at most ~2 x (watermark + chunk) per streaming connection.
RECV_BYTES = 256 * 1024
OUTBUF_HIGH_WATERMARK = 4 * MiB
OUTBUF_OVERFLOW = 16 * MiB


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(1024)
    return sock


def announce(settings: Settings, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f", {settings.workers} workers" if settings.workers > 1 else ""
    past = f", read-only as of {settings.as_of}" if settings.as_of else ""
    print(
        f"cargohold listening on http://{shown}:{port} "
        f"(data in {settings.data_dir}{workers}{past})",
        flush=True,
    )


_TLS_REFUSAL_BODY = b"this is an HTTP server, not HTTPS/TLS\r\n"
_TLS_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_TLS_REFUSAL_BODY)}\r\n\r\n".encode()
    + _TLS_REFUSAL_BODY
)


def _refusing_tls(channel_class: type[Any]) -> type[Any]:
    """A waitress channel that answers a TLS ClientHello at once instead of waiting.

    skopeo, podman and buildah with TLS verification off try HTTPS first and fall back to
    HTTP when that fails. waitress would wait for a request line that never comes (120 s;
    the clients give up after 10 s per command). A TLS handshake record starts with byte
    0x16, which no HTTP request can start with: answer it with a plain 400 and close,
    as distribution does ("server gave HTTP response to HTTPS client").
    """

    class RefusingTLS(channel_class):  # type: ignore[misc]
        _first = True

        def received(self, data: bytes) -> bool:
            if self._first and data:
                self._first = False
                if data[:1] == b"\x16":
                    reply = _TLS_REFUSAL
                    with self.outbuf_lock:
                        self.outbufs[-1].append(reply)
                        self.current_outbuf_count += len(reply)
                        self.total_outbufs_len += len(reply)
                    self.close_when_flushed = True
                    return False
            return bool(super().received(data))

    return RefusingTLS


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


def serve_with(container: Container, sock: socket.socket, parent: int | None = None) -> None:
    """Serve on ``sock`` in this process until SIGTERM or SIGINT (or, for a worker, until
    its ``parent`` supervisor is gone: a killed supervisor leaves no orphans serving)."""
    import waitress

    from cargohold.http.app import create_app

    settings = container.settings
    # NOTE: waitress warns "Task queue depth is N" for every request that finds no idle
    # thread; with few threads by design under load that is a log line per request.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    inline = InlineReads() if serves_inline(settings) else None
    lanes = LaneDispatcher(settings.read_threads, settings.threads, inline)
    server: Any = waitress.create_server(
        create_app(container),
        sockets=[sock],
        _dispatcher=lanes,
        threads=settings.threads,
        # NOTE: waitress refuses a body whose length *equals* its limit; we mean "at most".
        max_request_body_size=settings.max_request_body_size + 1,
        # PERF: waitress reads request bodies 8 KiB per recv by default, one trip through
        # its event loop and parser each: a 256 MiB upload then takes ~1.8 s to arrive
        # instead of ~0.5 s. The buffer is transient (one per read, in the loop thread).
        recv_bytes=RECV_BYTES,
        # PERF: a streamed response (the S3 store's blob reads) is held in memory, never
        # spilled through a temporary file: the writing thread waits once
        # OUTBUF_HIGH_WATERMARK bytes are queued, so one buffer never reaches the overflow
        # (a filesystem blob bypasses these buffers: it is sent with sendfile).
        outbuf_high_watermark=OUTBUF_HIGH_WATERMARK,
        outbuf_overflow=OUTBUF_OVERFLOW,
        ident="cargohold",
        clear_untrusted_proxy_headers=True,
    )
    # NOTE: the TLS refusal looks at the first bytes before anything parses them.
    server.channel_class = _refusing_tls(sending_files(streaming_channel(server.channel_class)))
    if inline is not None:
        inline.install(server, lanes.reads)  # NOTE: on this thread, which runs the loop
    stop = threading.Event()
    # NOTE: the live views stay current also when serving a past moment: they decide
    # who may read it (revocations take effect). Pulls and logins are recorded.
    container.runner.start()
    container.access_log.start()
    if not container.read_only:  # the writers: the log's own server does their work
        expiry = container.settings.upload_expiry_seconds
        for chore, args in (
            (chores.janitor, (container.uploads, expiry)),
            (chores.sealer, (container.audit_chain,)),
            (chores.tag_sweeper, (container.queries, container.registry, container.site_id)),
        ):
            threading.Thread(target=chore, args=(*args, stop), daemon=True).start()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        server.close()

    if parent is not None:

        def watch_parent() -> None:
            while not stop.wait(1.0):
                if os.getppid() != parent:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

        threading.Thread(target=watch_parent, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # NOTE: closing the socket from the signal handler ends run() with an OSError.
    with contextlib.suppress(OSError, ValueError):
        server.run()
    stop.set()
    # Write the buffered pulls and logins: a clean stop loses none.
    container.access_log.close()
    if container.read_only:
        return
    try:  # seal what was written last, so a clean stop leaves nothing unsealed
        container.audit_chain.seal()
    except Exception:
        log.exception("sealing the audit chain at shutdown failed")


def serve_workers(settings: Settings, sock: socket.socket) -> int:
    """Fork ``settings.workers`` workers on ``sock`` and supervise them."""
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False
    parent = os.getpid()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                container = bootstrap(settings, create_tables=False)
                try:
                    serve_with(container, sock, parent=parent)
                finally:
                    container.close()
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for index in range(settings.workers):
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
