"""``BodyPipe``: the event loop appends, one task thread reads, with backpressure, an end,
an abort, and a close that drops the rest (see ``http/server/streaming_bodies.py``)."""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest

from cargohold.domain.errors import SizeInvalid
from cargohold.http.registry_v2.errors import V2Error
from cargohold.http.server.streaming_bodies import BodyPipe, wants_streaming


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _reader(pipe: BodyPipe, out: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            out.append(pipe.read())
        except Exception as e:  # the test inspects it
            out.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_reader_waits_for_bytes_and_reads_to_the_end() -> None:
    pipe = BodyPipe(Wakes())
    out: list[object] = []
    reader = _reader(pipe, out)
    time.sleep(0.05)
    assert out == [] and reader.is_alive()  # nothing yet: it waits
    pipe.append(b"abc")
    pipe.append(b"defg")
    pipe.finish()
    reader.join(5)
    assert out == [b"abcdefg"] and len(pipe) == 7


def test_readinto_takes_parts_of_chunks_in_order() -> None:
    pipe = BodyPipe(Wakes())
    pipe.append(b"0123456789")
    pipe.append(b"abcdef")
    pipe.finish()
    buffer = bytearray(4)
    got = b""
    while n := pipe.readinto(buffer):
        got += bytes(buffer[:n])
    assert got == b"0123456789abcdef"


def test_a_full_pipe_stops_the_loop_and_the_reader_wakes_it() -> None:
    wakes = Wakes()
    pipe = BodyPipe(wakes, limit=8)
    pipe.append(b"12345678")
    assert pipe.full()
    buffer = bytearray(3)
    assert pipe.readinto(buffer) == 3
    assert not pipe.full() and wakes.count == 1  # the loop may read again
    assert pipe.readinto(buffer) == 3
    assert wakes.count == 1  # not full before: no wake


def test_a_client_gone_mid_body_fails_the_read_as_a_short_body() -> None:
    pipe = BodyPipe(Wakes())
    out: list[object] = []
    reader = _reader(pipe, out)
    pipe.append(b"partial")
    pipe.abort("the client closed the connection")
    reader.join(5)
    assert isinstance(out[0], SizeInvalid) and "closed the connection" in str(out[0])


def test_a_body_that_breaks_http_fails_with_its_status() -> None:
    pipe = BodyPipe(Wakes())
    pipe.abort("exceeds max_body of 10", 413)
    with pytest.raises(V2Error) as raised:
        pipe.read(10)
    assert raised.value.status.startswith("413") and raised.value.code == "SIZE_INVALID"


def test_close_drops_what_waits_and_what_comes_and_wakes_a_full_loop() -> None:
    wakes = Wakes()
    pipe = BodyPipe(wakes, limit=4)
    pipe.append(b"123456")
    pipe.close()
    assert wakes.count == 1 and not pipe.full()
    pipe.append(b"more")
    assert pipe.read(10) == b"" and len(pipe) == 10  # counted, not kept


@pytest.mark.parametrize(
    ("command", "path", "chunked", "length", "streamed"),
    [
        ("PATCH", "/v2/a/b/blobs/uploads/x", True, 0, True),
        ("PUT", "/v2/a/b/blobs/uploads/x", False, 2 << 20, True),
        ("POST", "/v2/a/b/blobs/uploads/", False, 2 << 20, True),
        ("PATCH", "/v2/a/b/blobs/uploads/x", False, 1000, False),  # small: spooled
        ("PUT", "/v2/a/b/manifests/v1", False, 2 << 20, False),  # not an upload
        ("PUT", "/api/v1/repository/a/b/blobs/uploads/x", True, 0, False),
    ],
)
def test_which_bodies_are_streamed(
    command: str, path: str, chunked: bool, length: int, streamed: bool
) -> None:
    assert wants_streaming(command, path, chunked, length) is streamed


def test_read_returns_what_arrived_without_a_buffer_of_the_size_asked() -> None:
    pipe = BodyPipe(Wakes())
    pipe.append(b"abcdef")
    pipe.append(b"gh")
    tracemalloc.start()
    try:
        first = pipe.read(64 * 1024 * 1024)  # the S3 store asks for a whole part
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first == b"abcdef"  # one chunk, fewer bytes than asked: as a file may
    assert peak < 1024 * 1024  # the old read allocated (and zeroed) the 64 MiB asked
    assert pipe.read(1) == b"g" and pipe.read(5) == b"h"
    pipe.append(b"tail")
    pipe.finish()
    assert pipe.read() == b"tail" and pipe.read(10) == b""
