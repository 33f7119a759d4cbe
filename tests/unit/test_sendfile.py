"""File-backed bodies go out with ``os.sendfile`` (``http/server/sendfile.py``): through a real
waitress server in this process, whose channel is the one ``serve`` builds, answering
with ``BlobFile``s the way the filesystem blob store does.

Each test counts the ``sendfile`` calls, so a channel that quietly went back to
read-and-send would fail them; and each checks the bytes the client got."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import waitress

from cargohold.adapters.blobs.blob_file import BlobFile
from cargohold.domain.values import Digest
from cargohold.http.server.sendfile import sending_files
from tests.fixtures.services import free_port

MiB = 1024 * 1024
BODY = os.urandom(9 * MiB + 12345)


class Sendfiles:
    """``os.sendfile``, counting the calls and the bytes each sent."""

    def __init__(self, real: Callable[..., int]) -> None:
        self.real = real
        self.sent: list[int] = []
        self.would_block = 0

    def __call__(self, out_fd: int, in_fd: int, offset: int, count: int) -> int:
        try:
            n = self.real(out_fd, in_fd, offset, count)
        except BlockingIOError:
            self.would_block += 1
            raise
        self.sent.append(n)
        return n


class Answers:
    """A WSGI app answering ``/file`` with a ``BlobFile`` over ``[offset, offset + length)``
    of ``path`` and ``/bytes`` with a plain body; remembers the files it handed out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.length = len(BODY)
        self.files: list[BlobFile] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/bytes":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"hello"]
        blob = BlobFile(str(self.path), Digest.of(b"x"), self.offset, self.length, chunk_size=MiB)
        self.files.append(blob)
        start_response("200 OK", [("Content-Length", str(self.length))])
        return environ["wsgi.file_wrapper"](blob, MiB)


@pytest.fixture
def sendfiles(monkeypatch: pytest.MonkeyPatch) -> Sendfiles:
    counting = Sendfiles(os.sendfile)
    monkeypatch.setattr(os, "sendfile", counting)
    return counting


@pytest.fixture
def answers(tmp_path: Path) -> Answers:
    path = tmp_path / "blob"
    path.write_bytes(BODY)
    return Answers(path)


@pytest.fixture
def port(answers: Answers) -> Iterator[int]:
    port = free_port()
    server: Any = waitress.create_server(answers, host="127.0.0.1", port=port, threads=2)
    server.channel_class = sending_files(server.channel_class)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield port
    server.close()
    server.task_dispatcher.shutdown()


def _get(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    got = b""
    while b"\r\n\r\n" not in got:
        piece = sock.recv(65536)
        assert piece, got
        got += piece
    head, _, rest = got.partition(b"\r\n\r\n")
    return head, rest


def _read_body(sock: socket.socket, length: int, rest: bytes, piece: int = MiB) -> bytes:
    body = bytearray(rest)
    while len(body) < length:
        data = sock.recv(piece)
        if not data:
            break
        body += data
    return bytes(body)


def test_a_file_body_is_sent_whole_by_sendfile(port: int, sendfiles: Sendfiles) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        _get(sock, "/file")
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert _read_body(sock, len(BODY), rest) == BODY
        # the connection goes on: a plain body after it, not through sendfile
        _get(sock, "/bytes")
        head, rest = _read_head(sock)
        assert _read_body(sock, 5, rest) == b"hello"
    assert sum(sendfiles.sent) == len(BODY)


def test_a_range_is_sent_from_its_offset(port: int, answers: Answers, sendfiles: Sendfiles) -> None:
    answers.offset, answers.length = 777_777, 3 * MiB + 1
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        _get(sock, "/file")
        _, rest = _read_head(sock)
        body = _read_body(sock, answers.length, rest)
    assert body == BODY[777_777 : 777_777 + 3 * MiB + 1]
    assert sum(sendfiles.sent) == answers.length


def test_a_slow_reader_gets_every_byte_in_order(port: int, sendfiles: Sendfiles) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    with sock:
        sock.connect(("127.0.0.1", port))
        _get(sock, "/file")
        _, rest = _read_head(sock)
        body = bytearray(rest)
        while len(body) < len(BODY):
            if len(body) < MiB:
                time.sleep(0.002)  # slow at first: the socket fills, sendfile would block
            data = sock.recv(32 * 1024)
            assert data
            body += data
    assert bytes(body) == BODY
    # a full socket took the body in several pieces, none lost or repeated
    assert len(sendfiles.sent) > 1 and sum(sendfiles.sent) == len(BODY)


def test_a_file_shorter_than_its_length_closes_the_connection(
    port: int, answers: Answers, sendfiles: Sendfiles
) -> None:
    answers.length = len(BODY) + MiB  # one MiB more than there is
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        _get(sock, "/file")
        _, rest = _read_head(sock)
        body = _read_body(sock, answers.length, rest)
        assert sock.recv(1) == b""  # closed, not left waiting for bytes that never come
    assert body == BODY
    assert sum(sendfiles.sent) == len(BODY)


def test_a_client_gone_mid_body_leaves_the_server_serving(
    port: int, answers: Answers, sendfiles: Sendfiles
) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        _get(sock, "/file")
        _read_head(sock)
        sock.recv(64 * 1024)
    deadline = time.monotonic() + 10
    while not answers.files[0].closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert answers.files[0].closed  # its descriptor is not leaked
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        _get(sock, "/file")
        _, rest = _read_head(sock)
        assert _read_body(sock, len(BODY), rest) == BODY
