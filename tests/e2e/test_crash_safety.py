"""Crash safety (issue 3, point 6): SIGKILL the live server during concurrent pushes.

Round after round, a few client threads push to a few repositories (blobs in chunked
PATCH/PUT flows, in POST-then-PUT and in single monolithic POSTs; manifests pushed by
tag; existing manifests re-tagged) while the server is killed with SIGKILL (all of its
processes, with ``--workers``) at a random moment, then restarted on the same data dir
and port. A ledger records every push that got its 201 and every tag move attempted.

After the last round, with the server up again, everything acknowledged must be there
byte-identical; every tag must name a manifest that exists and one its owner pushed
(the last acknowledged one, or one attempted after it whose answer the kill swallowed);
``replay verify`` must find the views equal to a replay of the log; and each tag's
history must be a chain of moves ending at the tag's current digest and containing every
acknowledged move in order.

Abandoned uploads: uploads started and left half-written before a SIGKILL are removed by
the restarted server's janitor once they pass their (short) expiry.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cargohold.bootstrap import bootstrap
from cargohold.config import load_settings
from cargohold.domain.values import RepositoryName, Tag
from tests.fixtures.server import BASE_ENV, Server, serving
from tests.fixtures.services import free_port
from tests.fixtures.v2client import OCI_MANIFEST, Response, V2Client, sha256

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KiB = 1024
REPOSITORIES = ["crash/alpha", "crash/beta", "crash/gamma"]
ROUNDS = 12
THREADS = 5
# Connection failures a client sees when the server dies under it.
GONE = (OSError, http.client.HTTPException)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


def kill_hard(server: Server, port: int, workers: int) -> None:
    """SIGKILL the server and every worker it forked; return once none of them listens."""
    pids = [server.proc.pid, *_descendants(server.proc.pid)]
    # with --workers N: the supervisor and its N workers, all killed at once
    assert len(pids) == (1 if workers == 1 else workers + 1), pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not _port_closed(port):
        assert time.monotonic() < deadline, "a killed server process still listens"
        time.sleep(0.05)


@dataclass
class Attempt:
    digest: str
    acked: bool = False


@dataclass
class Ledger:
    """What the clients were told: every 201, every tag move tried, every surprise."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    # (repository, tag) -> attempts in order; each tag has one owning thread
    moves: dict[tuple[str, str], list[Attempt]] = field(default_factory=lambda: defaultdict(list))
    anomalies: list[str] = field(default_factory=list)
    requests: int = 0
    interrupted: int = 0  # requests cut off by a kill

    def blob(self, repo: str, digest: str, data: bytes) -> None:
        with self.lock:
            self.blobs[(repo, digest)] = data

    def manifest(self, repo: str, digest: str, body: bytes) -> None:
        with self.lock:
            self.manifests[(repo, digest)] = body

    def attempt(self, repo: str, tag: str, digest: str) -> Attempt:
        attempt = Attempt(digest)
        with self.lock:
            self.moves[(repo, tag)].append(attempt)
        return attempt

    def unexpected(self, what: str, r: Response) -> None:
        with self.lock:
            self.anomalies.append(f"{what}: {r.status} {r.body[:300]!r}")

    def counted(self) -> None:
        with self.lock:
            self.requests += 1


class Pusher:
    """One client thread: random pushes until the server dies or ``stop`` is set.

    Thread ``index`` owns tag ``t<index>`` in every repository: only it moves that tag,
    so the order of its attempts is the order the log may have recorded them in.
    """

    def __init__(
        self, url: str, index: int, rng: random.Random, ledger: Ledger, stop: threading.Event
    ) -> None:
        self.client = V2Client(url, timeout=60)
        self.tag = f"t{index}"
        self.rng = rng
        self.ledger = ledger
        self.stop = stop

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self.ledger.counted()
        return self.client.request(*args, **kwargs)

    def run(self) -> None:
        ops = [
            self.chunked_blob,
            self.monolithic_blob,
            self.post_then_put_blob,
            self.manifest,
            self.manifest,
            self.retag,
        ]
        while not self.stop.is_set():
            repo = self.rng.choice(REPOSITORIES)
            try:
                self.rng.choice(ops)(repo)
            except GONE:
                with self.ledger.lock:
                    self.ledger.interrupted += 1
                return  # the server was killed under us

    # -- blobs -------------------------------------------------------------------------

    def _data(self, low: int, high: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(low, high))

    def monolithic_blob(self, repo: str, data: bytes | None = None) -> str | None:
        data = self._data(1 * KiB, 256 * KiB) if data is None else data
        digest = sha256(data)
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", data, params={"digest": digest})
        if r.status != 201:
            self.ledger.unexpected(f"monolithic POST {repo}", r)
            return None
        self.ledger.blob(repo, digest, data)
        return digest

    def _start(self, repo: str) -> str | None:
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        if r.status != 202:
            self.ledger.unexpected(f"upload start {repo}", r)
            return None
        return r.headers["location"]

    def post_then_put_blob(self, repo: str) -> None:
        data = self._data(1 * KiB, 256 * KiB)
        location = self._start(repo)
        if location is None:
            return
        digest = sha256(data)
        r = self.request("PUT", location, data, params={"digest": digest})
        if r.status != 201:
            self.ledger.unexpected(f"monolithic PUT {repo}", r)
            return
        self.ledger.blob(repo, digest, data)

    def chunked_blob(self, repo: str) -> None:
        data = self._data(64 * KiB, 1024 * KiB)
        location = self._start(repo)
        if location is None:
            return
        cuts = sorted(self.rng.sample(range(1, len(data)), self.rng.randint(1, 3)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        # the last piece rides on the closing PUT half of the time
        last = pieces.pop() if self.rng.random() < 0.5 else b""
        offset = 0
        for piece in pieces:
            r = self.request(
                "PATCH",
                location,
                piece,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                },
            )
            if r.status != 202:
                self.ledger.unexpected(f"PATCH {repo}", r)
                return
            location = r.headers["location"]
            offset += len(piece)
        headers = {"Content-Type": "application/octet-stream"}
        if last:
            headers["Content-Range"] = f"{offset}-{offset + len(last) - 1}"
        digest = sha256(data)
        r = self.request("PUT", location, last, headers=headers, params={"digest": digest})
        if r.status != 201:
            self.ledger.unexpected(f"closing PUT {repo}", r)
            return
        self.ledger.blob(repo, digest, data)

    # -- manifests and tags ------------------------------------------------------------

    def manifest(self, repo: str) -> None:
        config = json.dumps({"seed": self.rng.getrandbits(64)}).encode()
        config_digest = self.monolithic_blob(repo, config)
        with self.ledger.lock:
            linked = [(d, len(b)) for (r, d), b in self.ledger.blobs.items() if r == repo]
        if linked and self.rng.random() < 0.7:
            layer_digest, layer_size = self.rng.choice(linked)
        else:
            layer = self._data(1 * KiB, 64 * KiB)
            layer_digest, layer_size = self.monolithic_blob(repo, layer), len(layer)
        if config_digest is None or layer_digest is None:
            return
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": layer_size,
                    }
                ],
            },
            sort_keys=True,
        ).encode()
        digest = sha256(body)
        attempt = self.ledger.attempt(repo, self.tag, digest)
        r = self.request(
            "PUT", f"/v2/{repo}/manifests/{self.tag}", body, headers={"Content-Type": OCI_MANIFEST}
        )
        if r.status != 201 or r.headers.get("docker-content-digest") != digest:
            self.ledger.unexpected(f"manifest PUT {repo}:{self.tag}", r)
            return
        self.ledger.manifest(repo, digest, body)
        attempt.acked = True

    def retag(self, repo: str) -> None:
        """Point this thread's tag at a manifest already acknowledged (a pure tag move)."""
        with self.ledger.lock:
            known = [(d, b) for (r, d), b in self.ledger.manifests.items() if r == repo]
        if not known:
            return
        digest, body = self.rng.choice(known)
        attempt = self.ledger.attempt(repo, self.tag, digest)
        r = self.request(
            "PUT", f"/v2/{repo}/manifests/{self.tag}", body, headers={"Content-Type": OCI_MANIFEST}
        )
        if r.status != 201:
            self.ledger.unexpected(f"re-tag PUT {repo}:{self.tag}", r)
            return
        attempt.acked = True


def push_until_killed(
    server: Server, port: int, workers: int, rng: random.Random, ledger: Ledger
) -> float:
    threads = rng.randint(4, 6)
    stop = threading.Event()
    pushers = [
        Pusher(server.url, i, random.Random(rng.getrandbits(64)), ledger, stop)
        for i in range(threads)
    ]
    clients = [threading.Thread(target=p.run, daemon=True) for p in pushers]
    for c in clients:
        c.start()
    delay = rng.uniform(0.2, 1.5)
    time.sleep(delay)
    kill_hard(server, port, workers)
    stop.set()
    for c in clients:
        c.join(timeout=90)
        assert not c.is_alive(), "a client thread hung after the kill"
    return delay


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cargohold.cli", *args],
        cwd=cwd,
        env=BASE_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _collapsed(digests: list[str]) -> list[str]:
    """Consecutive repeats dropped: a move to where the tag already is records nothing."""
    out: list[str] = []
    for d in digests:
        if not out or out[-1] != d:
            out.append(d)
    return out


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


def check_tag(ledger: Ledger, key: tuple[str, str], current: str | None) -> None:
    """The tag's digest over HTTP agrees with what its owner was told."""
    attempts = ledger.moves.get(key, [])
    acked = [i for i, a in enumerate(attempts) if a.acked]
    if not acked:
        allowed = {a.digest for a in attempts}
        assert current is None or current in allowed, f"{key} at {current}, never pushed there"
        return
    # after the last acknowledged move, only a later attempt (its answer lost to the
    # kill) may have landed
    allowed = {a.digest for a in attempts[acked[-1] :]}
    assert current in allowed, f"{key} at {current}, expected one of {sorted(allowed)}"


def check_history(ledger: Ledger, data_dir: Path, current: dict[tuple[str, str], str]) -> int:
    """Each tag's history (read from the views) is an unbroken chain of moves that ends
    at the tag's current digest and contains every acknowledged move, in order."""
    settings = load_settings(environ={}, overrides={"data_dir": str(data_dir)})
    container = bootstrap(settings)
    moves = 0
    try:
        for repo, tag in {*ledger.moves, *current}:
            history = container.queries.tag_history(RepositoryName(repo), Tag(tag))
            assert all(h.action == "move" for h in history), history
            to = [h.to_digest for h in history]
            moves += len(to)
            # a chain: each move starts where the previous one ended
            assert [h.from_digest for h in history] == [None, *to][: len(to)], history
            assert (to[-1] if to else None) == current.get((repo, tag)), (repo, tag, history)
            attempts = ledger.moves.get((repo, tag), [])
            assert set(to) <= {a.digest for a in attempts}, (repo, tag, history)
            acked = _collapsed([a.digest for a in attempts if a.acked])
            assert _is_subsequence(acked, to), (repo, tag, acked, to)
    finally:
        container.close()
    return moves


@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_acknowledged_pushes_survive_sigkill(tmp_path: Path, workers: int) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed {seed}")
    data_dir = tmp_path / "data"
    port = free_port()
    args = ["--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"]
    if workers > 1:
        args += ["--workers", str(workers)]
    ledger = Ledger()
    started = time.monotonic()
    for round_ in range(ROUNDS):
        with serving(*args, cwd=tmp_path) as server:
            delay = push_until_killed(server, port, workers, rng, ledger)
            output = server.output()
        assert "Traceback" not in output, output
        print(
            f"round {round_}: killed after {delay:.2f}s; acks so far: "
            f"{len(ledger.blobs)} blobs, {len(ledger.manifests)} manifests"
        )
    assert ledger.anomalies == [], f"seed {seed}"
    # The kills landed mid-request, and pushes were acknowledged in most rounds.
    assert ledger.interrupted >= ROUNDS, ledger.interrupted
    assert len(ledger.blobs) >= ROUNDS and len(ledger.manifests) >= ROUNDS // 2, (
        len(ledger.blobs),
        len(ledger.manifests),
    )

    current: dict[tuple[str, str], str] = {}
    with serving(*args, cwd=tmp_path) as server:
        client = V2Client(server.url)
        for (repo, digest), data in ledger.blobs.items():
            r = client.request("GET", f"/v2/{repo}/blobs/{digest}")
            assert r.status == 200, (repo, digest, r.status, r.body[:200])
            assert r.body == data, (repo, digest, "blob differs from what was pushed")
        for (repo, digest), body in ledger.manifests.items():
            r = client.request(
                "GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
            )
            assert r.status == 200, (repo, digest, r.status, r.body[:200])
            assert r.body == body, (repo, digest, "manifest differs from what was pushed")
            assert r.headers["docker-content-digest"] == digest
        for repo in REPOSITORIES:
            for tag in client.tags(repo):
                # no half-applied push: the tag names a manifest that is there
                r = client.request("GET", f"/v2/{repo}/manifests/{tag}")
                assert r.status == 200, (repo, tag, r.status, r.body[:200])
                assert sha256(r.body) == r.headers["docker-content-digest"]
                current[(repo, tag)] = r.headers["docker-content-digest"]
        for key in {*ledger.moves, *current}:
            check_tag(ledger, key, current.get(key))
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0

    verify = run_cli("replay", "verify", "--data-dir", str(data_dir), "--quiet", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    moves = check_history(ledger, data_dir, current)
    acked_moves = sum(a.acked for m in ledger.moves.values() for a in m)
    print(
        f"{ROUNDS} kills, {ledger.requests} requests ({ledger.interrupted} cut off); "
        f"acknowledged {len(ledger.blobs)} blobs, {len(ledger.manifests)} manifests, "
        f"{acked_moves} tag moves; {moves} moves in history; "
        f"{time.monotonic() - started:.1f}s"
    )


def _error_codes(r: Response) -> list[str]:
    return [e["code"] for e in r.json()["errors"]]


@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_abandoned_uploads_are_removed_after_a_crash(tmp_path: Path, workers: int) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    args = ["--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"]
    if workers > 1:
        args += ["--workers", str(workers)]
    env = {"CARGOHOLD_UPLOAD_EXPIRY_SECONDS": "3"}
    repo = "crash/abandoned"
    locations: list[str] = []
    with serving(*args, cwd=tmp_path, env=env) as server:
        client = V2Client(server.url)
        kept = os.urandom(10 * KiB)
        kept_digest = client.push_blob(repo, kept)
        for i in range(4):
            r = client.request("POST", f"/v2/{repo}/blobs/uploads/")
            assert r.status == 202, r
            chunk = os.urandom((i + 1) * 8 * KiB)
            r = client.request(
                "PATCH",
                r.headers["location"],
                chunk,
                headers={"Content-Range": f"0-{len(chunk) - 1}"},
            )
            assert r.status == 202, r
            status = client.request("GET", r.headers["location"])
            assert status.status == 204 and status.headers["range"] == f"0-{len(chunk) - 1}"
            locations.append(r.headers["location"])
        kill_hard(server, port, workers)
    ids = [location.rsplit("/", 1)[1] for location in locations]
    staged = data_dir / "uploads"
    # the crash left them half-written on disk
    assert all((staged / i / "data").exists() for i in ids), sorted(os.listdir(staged))

    with serving(*args, cwd=tmp_path, env=env) as server:
        client = V2Client(server.url)
        deadline = time.monotonic() + 30
        pending = list(locations)
        while pending:
            assert time.monotonic() < deadline, f"uploads never expired: {pending}"
            time.sleep(0.25)
            answers = {loc: client.request("GET", loc) for loc in pending}
            for loc, r in answers.items():
                assert r.status in (204, 404), (loc, r.status, r.body[:200])
            pending = [loc for loc, r in answers.items() if r.status != 404]
        for loc in locations:
            r = client.request("GET", loc)
            assert r.status == 404 and _error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"], r
            # nor can it be finished or appended to any more
            r = client.request("PATCH", loc, b"more", headers={"Content-Range": "0-3"})
            assert r.status == 404 and _error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"], r
        while any((staged / i).exists() for i in ids):
            assert time.monotonic() < deadline, f"staged files left: {sorted(os.listdir(staged))}"
            time.sleep(0.25)
        assert os.listdir(staged) == []
        # the janitor removes uploads, never committed blobs
        r = client.request("GET", f"/v2/{repo}/blobs/{kept_digest}")
        assert r.status == 200 and r.body == kept
