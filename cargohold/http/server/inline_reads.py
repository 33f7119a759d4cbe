"""The smallest reads, answered on waitress's event-loop thread itself.

PERF: waitress parses a request on its event-loop thread and hands it to a task thread
(a lock, a condition variable, a thread switch and a GIL handoff), which answers and then
wakes the loop again through a pipe (the "trigger") so that it listens on the connection
again. For a manifest GET that costs more than the answer: 16 connections of manifest
GETs on one worker used 680-800 us of CPU per request with the read lane's one thread,
380-440 us answered on the loop thread (measured with wrk; the app itself takes
110-220 us). See docs/benchmarks.md, "Small requests on one worker".

So a request that is *tiny* (``is_tiny_read``: the ``/v2/`` check, a manifest GET or
HEAD, a blob HEAD, a tag listing) is served where it was parsed: ``InlineReads.take``
marks its channel instead of queueing it, and the channel (``inline_channel``) serves it
as soon as it has finished reading. Everything else keeps its lane.

Only with the embedded stores (SQLite views, filesystem blobs): their reads never wait on
a network, so the loop never stalls on one; over PostgreSQL or S3 a read can wait (a
pool, a round trip) and keeps its thread (``serve.py`` decides; setting ``inline_reads``
turns it off). What keeps the loop safe while it answers:

- it never waits for itself: waitress's task threads wait for the loop to drain a
  connection's output past ``outbuf_high_watermark``; on the loop that would deadlock, so
  there the output grows (a tiny read's answer is bounded: a manifest is at most 4 MiB);
- a client that pipelines many requests and reads no answers gets no more inline
  service once its unsent output passes that watermark: its remaining requests go to the
  read lane, whose thread waits for the output to drain as waitress always does;
- no other thread touches a connection while the loop answers on it: a pipelined
  request for a lane is dispatched only once the answer is sent;
- a request with Basic credentials keeps the read lane (a password hash would stall it);
- a wake-up of the loop by the loop itself is skipped (it recomputes what to listen to
  before it sleeps again anyway).
"""

from __future__ import annotations

import copy
import re
import sys
import threading
from typing import Any

from cargohold.config import Settings

# GET or HEAD: the base check, a manifest by tag or digest, a tag listing.
_TINY_GET = re.compile(r"/v2/(?:.+/manifests/[^/]+|.+/tags/list)?\Z", re.DOTALL)
# HEAD only: a blob's existence and size (its GET streams for as long as the client reads).
_TINY_HEAD = re.compile(r"/v2/.+/blobs/(?!uploads/)[^/]+\Z", re.DOTALL)


def serves_inline(settings: Settings) -> bool:
    """Whether tiny reads are answered on the loop: asked for, and on the embedded stores."""
    return (
        settings.inline_reads and not settings.uses_postgres and settings.blob_store == "filesystem"
    )


def is_tiny_read(method: str, path: str, authorization: str = "") -> bool:
    """Whether a request is answered from memory or one indexed query of the views,
    with a bounded answer, and no client or lock to wait for.

    NOTE: not with Basic credentials: checking a password hashes it (argon2, tens of
    milliseconds), which would stall every connection of the loop; such requests keep
    the read lane. A bearer token is checked once and then remembered (JWTSigner)."""
    if authorization[:6].lower() == "basic ":
        return False
    if method == "GET":
        return _TINY_GET.match(path) is not None
    if method == "HEAD":
        return _TINY_GET.match(path) is not None or _TINY_HEAD.match(path) is not None
    return False


class InlineReads:
    """Which thread runs the event loop, and the hand-off of tiny reads to it."""

    def __init__(self) -> None:
        self.loop_thread: int | None = None

    def on_loop(self) -> bool:
        return threading.get_ident() == self.loop_thread

    def take(self, channel: Any, method: str, path: str, lane: Any) -> bool:
        """Keep ``channel``'s next request for the loop (True), or leave it to ``lane``.

        NOTE: waitress calls ``add_task`` holding the channel's ``requests_lock``, which
        ``service`` takes too: the channel serves it after its read returns, not here.
        While the loop is answering on the channel, a request for a lane is held back
        too, until the answer is sent: no other thread may touch the channel's output
        before that (``inline_channel``)."""
        if not self.on_loop():
            return False
        request = channel.requests[0] if channel.requests else None
        authorization = "" if request is None else request.headers.get("AUTHORIZATION", "")
        if is_tiny_read(method, path, authorization):
            channel.inline_pending = True
            return True
        if getattr(channel, "answering", False):
            channel.deferred_lane = lane
            return True
        return False

    def install(self, server: Any, reads: Any) -> None:
        """Serve on ``server``'s loop (to be called on the thread that will run it);
        ``reads`` is the lane for pipelined requests whose output is backed up."""
        self.loop_thread = threading.get_ident()
        # PERF: while the loop answers, waitress queues the answer instead of sending its
        # header and its body as they are written (two sends, two packets): the channel
        # sends them together once the answer is complete.
        queueing = copy.copy(server.adj)
        queueing.send_bytes = sys.maxsize
        server.channel_class = inline_channel(server.channel_class, self, reads, queueing)
        pull = server.pull_trigger

        def pull_trigger() -> None:
            # The loop itself needs no wake-up: it rebuilds its poll set before sleeping.
            if not self.on_loop():
                pull()

        server.pull_trigger = pull_trigger


def inline_channel(
    channel_class: type[Any], inline: InlineReads, reads: Any, queueing: Any
) -> type[Any]:
    """A waitress channel that serves the requests ``inline`` kept for the loop;
    ``queueing`` is waitress's ``adj`` with a ``send_bytes`` that never flushes."""

    class InlineChannel(channel_class):  # type: ignore[misc]
        inline_pending = False
        answering = False
        deferred_lane: Any = None
        adj: Any  # waitress's Adjustments, set by the base class

        def handle_read(self) -> None:
            super().handle_read()
            # ``service`` re-queues the channel (``add_task``) for a pipelined next
            # request, which may mark it again.
            served = False
            while self.inline_pending:
                self.inline_pending = False
                if self.total_outbufs_len > self.adj.outbuf_high_watermark:
                    self.deferred_lane = reads  # backed up: its thread waits for the drain
                    break
                adj = self.adj
                self.adj, self.answering = queueing, True
                try:
                    self.service()
                finally:
                    self.adj, self.answering = adj, False
                served = True
            if served and self.total_outbufs_len:
                # As ``handle_write`` would on the next turn of the loop (no task thread
                # has this channel: see ``take``); what the socket does not take now is
                # sent when it is writable again.
                self._flush_exception(self._flush_some)
            if self.deferred_lane is not None:
                lane, self.deferred_lane = self.deferred_lane, None
                lane.add_task(self)

        def _flush_outbufs_below_high_watermark(self) -> None:
            if inline.on_loop():
                return  # waiting here would wait for this very thread
            super()._flush_outbufs_below_high_watermark()

    return InlineChannel
