"""Tiny reads answered on the event loop (http/server/inline_reads.py), on the real server:
in order with the other lanes on one connection, and never stalling the loop on a
client that pipelines big answers and reads none of them."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.fixtures.server import serving
from tests.fixtures.services import free_port
from tests.fixtures.v2client import OCI_MANIFEST, V2Client

NAME = "acme/app"


def _read_response(stream: BinaryIO, head_only: bool) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from a buffered socket file (Content-Length framing)."""
    status_line = stream.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    body = stream.read(length) if length else b""
    return status, headers, body


def _pipeline(port: int, requests: list[tuple[str, str]]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw = "".join(
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {OCI_MANIFEST}\r\n\r\n"
        for method, path in requests
    )
    sock.sendall(raw.encode())
    return sock


@pytest.mark.parametrize("inline", ["on", "off"])
def test_pipelined_requests_of_every_lane_are_answered_in_order(
    tmp_path: Path, inline: str
) -> None:
    port = free_port()
    env = {"CARGOHOLD_INLINE_READS": inline}
    args = ("--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}")
    with serving(*args, cwd=tmp_path, env=env) as server:
        client = V2Client(server.url)
        manifest = client.image_manifest(NAME, "one")
        assert client.put_manifest(NAME, "v1", manifest).status == 201
        layer = json.loads(manifest)["layers"][0]
        digest = client.request("HEAD", f"/v2/{NAME}/manifests/v1").headers["docker-content-digest"]
        requests = [
            ("GET", f"/v2/{NAME}/manifests/v1"),  # tiny
            ("GET", f"/v2/{NAME}/blobs/{layer['digest']}"),  # the long lane: streams
            ("HEAD", f"/v2/{NAME}/blobs/{layer['digest']}"),  # tiny
            ("GET", "/v2/_catalog"),  # the read lane
            ("GET", f"/v2/{NAME}/tags/list"),  # tiny
            ("GET", f"/v2/{NAME}/manifests/{digest}"),  # tiny
            ("GET", f"/v2/{NAME}/manifests/missing"),  # tiny, an error
            ("GET", "/v2/"),  # tiny
        ]
        with _pipeline(port, requests) as sock, sock.makefile("rb") as stream:
            answers = [_read_response(stream, method == "HEAD") for method, _ in requests]
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 200, 200, 200, 200, 200, 404, 200]
    assert answers[0][2] == manifest and answers[5][2] == manifest
    assert len(answers[1][2]) == layer["size"]
    assert answers[2][1]["content-length"] == str(layer["size"])
    assert json.loads(answers[3][2]) == {"repositories": [NAME]}
    assert json.loads(answers[4][2]) == {"name": NAME, "tags": ["v1"]}
    assert json.loads(answers[6][2])["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_a_client_that_reads_no_answers_never_stalls_the_loop(tmp_path: Path) -> None:
    """20 pipelined GETs of a ~3.5 MiB manifest (70 MiB of answers, far past waitress's
    4 MiB output watermark) on a connection that reads nothing: other connections are
    still answered at once, and the 20 answers all arrive once it reads."""
    port = free_port()
    args = ("--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}")
    with serving(*args, cwd=tmp_path) as server:
        client = V2Client(server.url)
        small = json.loads(client.image_manifest(NAME, "big"))
        small["annotations"] = {"padding": "x" * (3_500_000)}
        manifest = json.dumps(small, sort_keys=True).encode()
        assert client.put_manifest(NAME, "big", manifest).status == 201, "push failed"
        count = 20
        requests = [("GET", f"/v2/{NAME}/manifests/big")] * count
        with _pipeline(port, requests) as stalled:
            time.sleep(1.0)  # the server answers what it can, then its output backs up
            for _ in range(5):
                started = time.monotonic()
                assert client.request("GET", "/v2/").status == 200
                r = client.request("HEAD", f"/v2/{NAME}/manifests/big")
                assert r.status == 200
                assert time.monotonic() - started < 5, "the loop stalled on the backed-up client"
            with stalled.makefile("rb") as stream:
                answers = [_read_response(stream, head_only=False) for _ in range(count)]
    assert [status for status, _, _ in answers] == [200] * count
    assert all(body == manifest for _, _, body in answers)
    assert OCI_MANIFEST in answers[0][1]["content-type"]
