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

from cargohold.bootstrap import Container, bootstrap
from cargohold.config import Settings

log = logging.getLogger(__name__)


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
    print(
        f"cargohold listening on http://{shown}:{port} (data in {settings.data_dir}{workers})",
        flush=True,
    )


def _janitor(container: Container, stop: threading.Event) -> None:
    """Remove abandoned uploads once they are older than the configured expiry."""
    interval = max(1.0, min(container.settings.upload_expiry_seconds / 4, 300.0))
    while not stop.wait(interval):
        try:
            removed = container.uploads.purge_expired()
            if removed:
                log.info("removed %d expired uploads", removed)
        except Exception:  # NOTE: a failed sweep is retried next interval
            log.exception("upload janitor failed")


SEAL_INTERVAL_SECONDS = 1.0


def _sealer(container: Container, stop: threading.Event) -> None:
    """Seal new events into the audit chain about once a second (see replay/chain.py).

    Every worker runs one; they take turns by compare-and-set on the chain's head."""
    while not stop.wait(SEAL_INTERVAL_SECONDS):
        try:
            container.audit_chain.seal()
        except Exception:  # NOTE: a failed pass is retried; nothing is skipped
            log.exception("sealing the audit chain failed")


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


def serve_with(container: Container, sock: socket.socket, parent: int | None = None) -> None:
    """Serve on ``sock`` in this process until SIGTERM or SIGINT (or, for a worker, until
    its ``parent`` supervisor is gone: a killed supervisor leaves no orphans serving)."""
    import waitress

    from cargohold.http.app import create_app

    settings = container.settings
    server: Any = waitress.create_server(
        create_app(container),
        sockets=[sock],
        threads=settings.threads,
        # NOTE: waitress refuses a body whose length *equals* its limit; we mean "at most".
        max_request_body_size=settings.max_request_body_size + 1,
        ident="cargohold",
        clear_untrusted_proxy_headers=True,
    )
    server.channel_class = _refusing_tls(server.channel_class)
    stop = threading.Event()
    container.runner.start()
    container.access_log.start()
    janitor = threading.Thread(target=_janitor, args=(container, stop), daemon=True)
    janitor.start()
    threading.Thread(target=_sealer, args=(container, stop), daemon=True).start()

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
