"""Blob bodies sent from the file by the kernel (``os.sendfile``), not through Python.

A filesystem blob answers a GET with a ``BlobFile``, which falcon hands to waitress's
``wsgi.file_wrapper``. waitress would then send it by reading a socket buffer's worth
into a ``bytes`` and sending that: every byte copied twice, and the GIL taken for each
piece. ``sending_files`` makes a channel send such a body with ``os.sendfile`` from the
blob's descriptor, as distribution does (Go's ``io.Copy`` from a file to a TCP connection).
Every other answer goes out as before.

A body is sent this way when its ``file_wrapper`` wraps an object with a
``sendfile_source()`` giving the descriptor and the absolute offset of its current
position (``BlobFile``). The socket is non-blocking: a full socket sends nothing, and the
event loop comes back when it can take more, as with ``send``.

NOTE: this replaces waitress 3.0's ``HTTPChannel._flush_some``, the loop that sends the
queued output buffers (waitress is pinned below 4 in setup.cfg for this and for
``streaming_bodies``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from waitress.buffers import ReadOnlyFileBasedBuffer

# NOTE: the errors after which waitress's own send treats the client as gone
from waitress.wasyncore import _DISCONNECTED

from cargohold.domain.errors import StorageError

# PERF: at most this much per sendfile call, so one answer does not hold the event loop
# while a slow client drains a large blob (the kernel takes what fits in the socket buffer
# anyway; the cap only matters when the receiver keeps up).
SENDFILE_STEP = 4 * 1024 * 1024

# ``sendfile_source``: the descriptor to send from, and the absolute offset of the position
Source = Callable[[], tuple[int, int]]


def _sender(outbuf: Any) -> Source | None:
    if not isinstance(outbuf, ReadOnlyFileBasedBuffer):
        return None
    source: Source | None = getattr(outbuf.file, "sendfile_source", None)
    return source


def sending_files(channel_class: type[Any]) -> type[Any]:
    """A waitress channel that sends file-backed bodies with ``os.sendfile``."""

    class SendingFiles(channel_class):  # type: ignore[misc]
        def _sendfile(self, source: Source, count: int, do_close: bool) -> int:
            fd, offset = source()
            try:
                sent = os.sendfile(self.socket.fileno(), fd, offset, count)
            except BlockingIOError:
                return 0
            except OSError as e:
                if e.errno not in _DISCONNECTED:
                    raise
                if do_close:
                    self.handle_close()
                return 0
            if sent == 0:
                # NOTE: end of file before the recorded size: a truncated blob. Raising
                # makes waitress log it and close the connection, so the client sees a
                # short body rather than waiting for bytes that will never come.
                raise StorageError("a blob file ended before its recorded size")
            return sent

        def _flush_some(self, do_close: bool = True) -> bool:
            # Waitress's loop, with sendfile for a file-backed buffer.
            sent = 0
            while True:
                outbuf = self.outbufs[0]
                remaining = outbuf.__len__()
                source = _sender(outbuf) if remaining else None
                stalled = False
                while remaining > 0:
                    if source is not None:
                        count = self._sendfile(source, min(remaining, SENDFILE_STEP), do_close)
                    else:
                        count = self.send(outbuf.get(self.sendbuf_len), do_close=do_close)
                    if not count:
                        stalled = True
                        break
                    outbuf.skip(count, True)
                    remaining -= count
                    sent += count
                    self.total_outbufs_len -= count
                if stalled:
                    break
                if len(self.outbufs) == 1:
                    break  # caught up; the last buffer is always the writable one
                finished = self.outbufs.pop(0)
                try:
                    finished.close()
                except Exception:
                    self.logger.exception("Unexpected error when closing an outbuf")
            if sent:
                self.last_activity = time.time()
                return True
            return False

    return SendingFiles
