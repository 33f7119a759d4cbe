"""waitress on one listening socket, for one WSGI app, until a signal stops it.

``create_server`` builds the server with this package's pieces: the two lanes of request
threads (``lanes.py``), tiny reads on the event loop (``inline_reads.py``), request
bodies streamed as they arrive (``streaming_bodies.py``), file-backed bodies sent with
``sendfile`` (``sendfile.py``) and the TLS refusal (``tls_refusal.py``); ``run`` serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any

from cargohold.config import Settings
from cargohold.http.server.inline_reads import InlineReads, serves_inline
from cargohold.http.server.lanes import LaneDispatcher
from cargohold.http.server.sendfile import sending_files
from cargohold.http.server.streaming_bodies import streaming_channel
from cargohold.http.server.tls_refusal import refusing_tls

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

MiB = 1024 * 1024
# waitress's buffer sizes (see ``create_server``): bytes per recv of a request, and the
# queued-response bounds per connection. The overflow leaves room above the watermark
# for one more chunk (blob stores yield 1 MiB), so a queued response stays in memory:
# at most ~2 x (watermark + chunk) per streaming connection.
RECV_BYTES = 256 * 1024
OUTBUF_HIGH_WATERMARK = 4 * MiB
OUTBUF_OVERFLOW = 16 * MiB


def create_server(app: WSGIApplication, sock: socket.socket, settings: Settings) -> Any:
    """A waitress server for ``app`` on ``sock`` (not yet running), with the threads,
    body limit and inline reads of ``settings``."""
    import waitress

    # NOTE: waitress warns "Task queue depth is N" for every request that finds no idle
    # thread; with few threads by design under load that is a log line per request.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    inline = InlineReads() if serves_inline(settings) else None
    lanes = LaneDispatcher(settings.read_threads, settings.threads, inline)
    server: Any = waitress.create_server(
        app,
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
    server.channel_class = refusing_tls(sending_files(streaming_channel(server.channel_class)))
    if inline is not None:
        inline.install(server, lanes.reads)  # NOTE: on this thread, which runs the loop
    return server


def run(server: Any, stop: threading.Event, parent: int | None = None) -> None:
    """Run ``server`` (from ``create_server``) on this thread until SIGTERM or SIGINT, or,
    for a worker, until its ``parent`` supervisor is gone (a killed supervisor leaves no
    orphans serving). Sets ``stop`` when a signal arrives and again once the server has
    stopped, so that whatever watches it winds down."""

    signalled = False

    def on_signal(signum: int, frame: object) -> None:
        # NOTE: once only. A second signal (the supervisor forwards its SIGTERM, and
        # ``pkill -f`` sends one to every process of serve) can run this handler again
        # inside the first one's ``stop.set()``, whose lock it would then wait on for
        # ever: the worker never stopped.
        nonlocal signalled
        if signalled:
            return
        signalled = True
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
