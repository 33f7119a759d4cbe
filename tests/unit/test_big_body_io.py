"""The request-body source the upload resources hand the blob store, and the bounds of
waitress's response buffers (issue 5: big bodies)."""

from __future__ import annotations

import io

from cargohold.adapters.blobs import DEFAULT_CHUNK_SIZE
from cargohold.http.registry_v2.blobs import RequestBody
from cargohold.http.server import serve


class ReadOnly:
    """A WSGI input without ``readinto`` (as some servers' are)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._data.read(size)


def test_request_body_never_reads_past_its_length() -> None:
    stream = io.BytesIO(b"0123456789next request")
    body = RequestBody(stream, 10)
    buffer = bytearray(8)

    assert body.readinto(buffer) == 8 and buffer == b"01234567"
    assert body.read(100) == b"89"
    assert body.readinto(buffer) == 0 and body.read(5) == b""
    assert stream.tell() == 10  # what follows the body is left alone


def test_request_body_fills_buffers_without_readinto_on_the_stream() -> None:
    body = RequestBody(ReadOnly(b"abcdef"), 5)
    buffer = bytearray(4)

    assert body.readinto(memoryview(buffer)) == 4 and buffer == b"abcd"
    assert body.readinto(buffer) == 1 and buffer[:1] == b"e"
    assert body.readinto(buffer) == 0


def test_a_queued_response_never_spills_to_a_temporary_file() -> None:
    # waitress moves a connection's queued output to a temporary file once one buffer
    # holds OUTBUF_OVERFLOW bytes; the writer waits at the watermark, so a buffer holds at
    # most the watermark plus one chunk of a blob read.
    assert serve.OUTBUF_HIGH_WATERMARK + DEFAULT_CHUNK_SIZE < serve.OUTBUF_OVERFLOW
    assert serve.RECV_BYTES >= 64 * 1024
