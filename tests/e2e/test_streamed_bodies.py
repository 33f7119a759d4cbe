"""Upload bodies reach the application while they arrive (``http/server/streaming_bodies.py``),
through a real ``cargohold serve`` and raw sockets: an upload grows before its body
ends; an answer given before the body is read leaves the connection usable; a client
that goes away mid-body commits nothing and the upload resumes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_v2_fuzz import call, sha256
from tests.fixtures.server import serving
from tests.fixtures.services import free_port

MiB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--listen", f"127.0.0.1:{free_port()}"]
    with serving(*args, cwd=tmp_path) as s:
        yield int(s.url.rsplit(":", 1)[1]), data


def _chunk(block: bytes) -> bytes:
    return f"{len(block):x}\r\n".encode() + block + b"\r\n"


def _staged(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "uploads").glob("*/data"))


def _read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        piece = sock.recv(65536)
        if not piece:
            break
        answer += piece
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


def _start(port: int) -> str:
    r = call(port, "POST", "/v2/s/b/blobs/uploads/")
    assert r.status == 202, r
    return r.headers["location"]


def test_an_upload_is_written_while_its_body_arrives(server: tuple[int, Path]) -> None:
    port, data = server
    location = _start(port)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        for _ in range(8):
            sock.sendall(_chunk(BLOCK))
        # the body is not over, yet its bytes are in the upload already
        deadline = time.monotonic() + 10
        while _staged(data) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _staged(data) > 0
        for _ in range(8):
            sock.sendall(_chunk(BLOCK))
        sock.sendall(b"0\r\n\r\n")
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
    assert b"\r\nRange: 0-16777215\r\n" in answer
    r = call(port, "PUT", f"{location}?digest={sha256(BLOCK * 16)}")
    assert r.status == 201, r


def test_an_answer_before_the_body_leaves_the_connection_usable(
    server: tuple[int, Path],
) -> None:
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"PATCH /v2/s/b/blobs/uploads/no-such-upload HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(6):
            sock.sendall(_chunk(BLOCK))
        sock.sendall(b"0\r\n\r\n")
        answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 404 "), answer[:300]
        assert b"BLOB_UPLOAD_UNKNOWN" in answer
        # the rest of the body was read and dropped: the next request is understood
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(sock).startswith(b"HTTP/1.1 200 ")


def test_a_client_gone_mid_body_commits_nothing_and_the_upload_resumes(
    server: tuple[int, Path],
) -> None:
    port, data = server
    location = _start(port)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: {4 * MiB}\r\n\r\n".encode()
        )
        sock.sendall(BLOCK * 3)
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = call(port, "GET", location)
        if r.status == 204 and r.headers["range"] == "0-0" and _staged(data) == 0:
            break
        time.sleep(0.1)
    assert r.status == 204 and r.headers["range"] == "0-0", r
    assert _staged(data) == 0  # the part that landed was cut back
    r = call(port, "PATCH", location, BLOCK * 4)
    assert r.status == 202 and r.headers["range"] == f"0-{4 * MiB - 1}", r
    r = call(port, "PUT", f"{location}?digest={sha256(BLOCK * 4)}")
    assert r.status == 201, r
    assert call(port, "GET", "/health").status == 200


def test_a_closing_put_sent_chunked_brings_its_last_chunk(server: tuple[int, Path]) -> None:
    """httpx, Go's net/http and others send a body of unknown length chunked, also on the
    PUT that closes an upload: its bytes are the blob's last chunk, not nothing."""
    port, _ = server
    location = _start(port)
    digest = sha256(BLOCK * 3)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"PUT {location}?digest={digest} HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + b"".join(_chunk(BLOCK) for _ in range(3))
            + b"0\r\n\r\n"
        )
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    r = call(port, "GET", f"/v2/s/b/blobs/{digest}")
    assert r.status == 200 and r.body == BLOCK * 3
