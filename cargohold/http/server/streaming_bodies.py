"""Upload bodies streamed to the application while they arrive, instead of spooled.

PERF: waitress reads a whole request body before it calls the application, spooling
all but the first 512 KiB of it to a temporary file; the upload then reads the spool
back and writes every byte again into the blob store: two writes and a read per byte,
one after the other (the profile in docs/benchmarks.md: ``FileBasedBuffer.append``
22-31% of an upload). Here the body of a blob upload (``POST``/``PATCH``/``PUT`` under
``/v2/<name>/blobs/uploads/``, chunked or longer than ``STREAM_FROM`` bytes) goes into
a ``BodyPipe`` instead, and the request is handed to a task thread as soon as its
headers are in: the event loop appends what arrives, the task reads it (hashing and
writing it once) at the same time.

How it stays safe:

- **Backpressure.** While ``LIMIT`` bytes wait in the pipe, the channel stops reading
  from its socket (``readable``); the task wakes the loop when it has taken them.
- **An answer before the body is read** (a refusal: 401, 404, a bad range) closes the
  pipe: the rest of the body is then read and dropped, as waitress drops it when it
  answers an error, and the connection stays usable for the next request.
- **A body that ends badly** (the client goes away, a malformed chunk, past
  ``max_request_body_size``) makes the reading task raise ``SizeInvalid``: the blob
  store's all-or-nothing append cuts back what the request wrote, no blob is committed.
- **Order.** A streamed request is queued like any other, so responses on one
  connection keep their order (waitress serves one request of a connection at a time).
- A chunked body's length is unknown when the application starts: the request carries
  ``wsgi.input_terminated`` (the convention of mod_wsgi and gunicorn), and the input
  ends at the body's end.

NOTE: this builds on waitress 3.0 internals (``HTTPChannel.received``/``readable``/
``service``, the parser's ``body_rcv.buf``); ``tests/e2e/test_v2_streaming.py`` and
``tests/unit/test_streaming_bodies.py`` pin the behaviour.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import falcon
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask

from cargohold.domain.errors import SizeInvalid
from cargohold.http.registry_v2.errors import V2Error

#: Bytes a pipe holds before the channel stops reading its socket.
LIMIT = 4 * 1024 * 1024
#: Bodies with a declared length up to this are spooled as waitress does (one handoff).
STREAM_FROM = 1024 * 1024

_METHODS = frozenset({"POST", "PATCH", "PUT"})


def wants_streaming(command: str, path: str, chunked: bool, content_length: int) -> bool:
    """Whether a request's body is streamed: a blob upload, chunked or big."""
    return (
        command in _METHODS
        and path.startswith("/v2/")
        and "/blobs/uploads/" in path
        and (chunked or content_length > STREAM_FROM)
    )


class BodyPipe:
    """A request body in flight. The event loop ``append``s, ``finish``es or ``abort``s;
    one task thread reads (``read``/``readinto``, blocking until bytes, the end, or an
    abort). ``close`` (waitress's, after the response) drops whatever comes after.

    Also what waitress's receivers expect of a buffer (``append``, ``__len__``: the
    bytes received, ``getfile``, ``close``)."""

    def __init__(self, wake: Callable[[], None], limit: int = LIMIT) -> None:
        self._wake = wake
        self._limit = limit
        self._cond = threading.Condition()
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._ended = False
        self._failure: str | None = None
        self._status: int | None = None  # an HTTP status when the body broke HTTP
        self._dropping = False
        self._received = 0

    # -- the event loop's side -----------------------------------------------------------

    def __len__(self) -> int:
        return self._received

    def append(self, data: bytes) -> None:
        self._received += len(data)
        with self._cond:
            if self._dropping:
                return
            self._chunks.append(memoryview(data))
            self._buffered += len(data)
            self._cond.notify()

    def full(self) -> bool:
        """Whether the channel should stop reading until the task takes some."""
        return self._buffered >= self._limit and not self._dropping

    def finish(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def abort(self, reason: str, status: int | None = None) -> None:
        with self._cond:
            self._failure = reason
            self._status = status
            self._cond.notify_all()

    @property
    def failed(self) -> bool:
        return self._failure is not None

    # -- waitress's buffer interface ----------------------------------------------------

    def getfile(self) -> BodyPipe:
        return self

    def getbuf(self) -> BodyPipe:
        return self

    def close(self) -> None:
        """Nobody reads any more: drop what is buffered and what still comes."""
        with self._cond:
            was_full = self._buffered >= self._limit
            self._dropping = True
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()
        if was_full:
            self._wake()

    # -- the task's side ----------------------------------------------------------------

    def _wait_locked(self) -> bool:
        """Under the lock: wait until bytes are buffered (True) or the body is over
        (False); raise if it failed."""
        while not self._chunks and not self._ended and self._failure is None:
            if self._dropping:
                return False
            self._cond.wait()
        if not self._chunks:
            if self._failure is not None:
                raise self._error()
            return False
        return True

    def _taken_locked(self, n: int) -> bool:
        """Under the lock: ``n`` bytes were taken out; whether the event loop, stopped by
        a full pipe, may read the socket again."""
        was_full = self._buffered >= self._limit
        self._buffered -= n
        return was_full and self._buffered < self._limit

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        with self._cond:
            if not self._wait_locked():
                return 0
            n = 0
            while self._chunks and n < len(view):
                chunk = self._chunks[0]
                take = min(len(chunk), len(view) - n)
                view[n : n + take] = chunk[:take]
                n += take
                if take == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[take:]
            wake = self._taken_locked(n)
        if wake:
            self._wake()  # NOTE: the loop may read the socket again
        return n

    def _error(self) -> Exception:
        message = f"the request body ended early: {self._failure}"
        if self._status is None:
            return SizeInvalid(message)
        # NOTE: a body that breaks HTTP: the parser has marked the request
        # "Connection: close", so waitress closes the connection after this answer.
        return V2Error(falcon.code_to_http_status(self._status), "SIZE_INVALID", message)

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes (all the rest: -1), as they arrived: one received chunk
        or a part of it, so fewer than ``size`` before the end, as a file may.

        PERF: no buffer of ``size``: the S3 store asks for a multipart part at a time
        (megabytes), which a zeroed buffer per call and two copies made the upload's
        hottest spot."""
        if size is None or size < 0:
            parts: list[bytes] = []
            while part := self.read(1 << 20):
                parts.append(part)
            return b"".join(parts)
        if size == 0:
            return b""
        with self._cond:
            if not self._wait_locked():
                return b""
            chunk = self._chunks[0]
            if len(chunk) <= size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[size:]
                chunk = chunk[:size]
            wake = self._taken_locked(len(chunk))
        if wake:
            self._wake()
        return bytes(chunk)


class StreamingParser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's request parser, putting an upload's body into a ``BodyPipe``.

    ``wake`` (set by the channel that made it) wakes the event loop."""

    pipe: BodyPipe | None = None
    wake: Callable[[], None] = staticmethod(lambda: None)

    def received(self, data: bytes) -> int:
        n = int(super().received(data))
        if (
            self.pipe is None
            and self.headers_finished
            and not self.completed
            and self.body_rcv is not None
            and wants_streaming(
                str(self.command), str(self.path), bool(self.chunked), self.content_length
            )
        ):
            # The headers were all this call consumed (waitress returns at their end):
            # the spool is swapped for a pipe before the body's first byte.
            self.pipe = BodyPipe(self.wake)
            self.body_rcv.buf = self.pipe
        elif self.pipe is not None and self.completed:
            if self.error is not None:
                # The rest of the stream cannot be parsed: answer, then close.
                self.headers["CONNECTION"] = "close"
                self.pipe.abort(
                    str(getattr(self.error, "body", None) or self.error),
                    int(getattr(self.error, "code", 400)),
                )
            else:
                self.pipe.finish()
        return n


class StreamingTask(WSGITask):  # type: ignore[misc]
    """A chunked body streamed has no length yet: say that the input ends at its end."""

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        if getattr(self.request, "pipe", None) is not None and self.request.chunked:
            environ["wsgi.input_terminated"] = True
        return environ


def streaming_channel(channel_class: type[Any]) -> type[Any]:
    """waitress's channel, handing a request with a ``BodyPipe`` to a task as soon as
    its headers are in, and reading its body while the task runs."""

    class StreamingChannel(channel_class):  # type: ignore[misc]
        parser_class: Any = StreamingParser
        task_class = StreamingTask
        request: Any
        sent_continue: bool
        will_close: bool
        _streaming: Any = None  # the request whose body is in flight
        _poisoned = False  # a streamed body broke HTTP: read nothing more

        def readable(self) -> bool:
            if self._poisoned:
                return False
            streaming = self._streaming
            if streaming is None:
                return bool(super().readable())
            pipe: BodyPipe = streaming.pipe
            return not (self.will_close or self.close_when_flushed or pipe.full())

        def received(self, data: bytes) -> bool:
            if not data:
                return False
            with self.requests_lock:
                if self.will_close or self.close_when_flushed or self._poisoned:
                    return False
                while data:
                    request: Any = self.request
                    if request is None:
                        request = self.request = self.parser_class(self.adj)
                        request.wake = self.server.pull_trigger
                    n = request.received(data)
                    if (
                        request.expect_continue
                        and request.headers_finished
                        and not self.requests
                        and not self.sent_continue
                    ):
                        self.send_continue()
                    if (
                        request.pipe is not None
                        and self._streaming is not request
                        and not request.completed
                    ):
                        # Headers in, body to come: serve it now (queued in order).
                        self._streaming = request
                        self._queue(request)
                    if request.completed:
                        self.sent_continue = False
                        if request is self._streaming:
                            self._streaming = None  # queued already
                            if request.error is not None:
                                # What follows cannot be parsed: read no more. The
                                # answer closes the connection (or, given already,
                                # the connection closes now).
                                self.request = None
                                if request in self.requests:
                                    self._poisoned = True
                                else:
                                    self.will_close = True
                                break
                        elif not request.empty:
                            self._queue(request)
                        self.request = None
                    if n >= len(data):
                        break
                    data = data[n:]
            return True

        def _queue(self, request: Any) -> None:
            self.requests.append(request)
            if len(self.requests) == 1:
                self.server.add_task(self)

        def handle_close(self) -> None:
            self._abort("the client closed the connection")
            super().handle_close()

        def cancel(self) -> None:
            self._abort("the server is stopping")
            super().cancel()

        def _abort(self, reason: str) -> None:
            streaming = self._streaming
            if streaming is not None:
                streaming.pipe.abort(reason)

    return StreamingChannel
