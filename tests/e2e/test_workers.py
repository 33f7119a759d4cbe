"""``serve --workers N``: N processes on one socket, consistent with each other."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests.fixtures.server import serving
from tests.fixtures.services import free_port
from tests.fixtures.v2client import V2Client, sha256


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _wait_for_workers(pid: int, count: int, without: int | None = None) -> list[int]:
    for _ in range(200):
        now = _children(pid)
        if len(now) == count and without not in now:
            return now
        time.sleep(0.05)
    pytest.fail(f"expected {count} workers, found {_children(pid)}")


def test_workers_share_the_socket_and_see_each_others_writes(tmp_path: Path) -> None:
    port = free_port()
    args = ["--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}", "--workers", "3"]
    with serving(*args, cwd=tmp_path) as server:
        assert "3 workers" in server.banner
        workers = _wait_for_workers(server.proc.pid, 3)
        client = V2Client(server.url)
        for i in range(30):
            body = client.image_manifest("acme/app", f"s{i}")
            assert client.put_manifest("acme/app", f"t{i}", body).status == 201
            # fresh connections land on any worker: each must see the write at once
            for _ in range(3):
                assert f"t{i}" in client.tags("acme/app")
                r = client.request("GET", f"/v2/acme/app/manifests/t{i}")
                assert r.status == 200 and r.headers["docker-content-digest"] == sha256(body)
        # a worker that dies is replaced
        os.kill(workers[0], signal.SIGKILL)
        replaced = _wait_for_workers(server.proc.pid, 3, without=workers[0])
        assert workers[0] not in replaced
        assert len(client.tags("acme/app")) == 30
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0


def test_a_sigterm_to_every_process_at_once_stops_them_all(tmp_path: Path) -> None:
    """As ``pkill -f 'cargohold serve'`` does: the supervisor and each worker get a
    SIGTERM, and the workers one more each from the supervisor, and more again; every
    one of them exits, promptly and cleanly (a second signal inside the first one's
    handler once deadlocked a worker)."""
    port = free_port()
    args = ["--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}", "--workers", "2"]
    with serving(*args, cwd=tmp_path) as server:
        workers = _wait_for_workers(server.proc.pid, 2)
        for _ in range(5):
            for pid in (*workers, server.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line
    return ""
