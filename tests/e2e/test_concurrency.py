"""Concurrency (issue 3, point 7): sixteen clients push to one repository and tag at once.

Each client has its own connections and pushes a manifest of its own (its own config and
layer blobs) to the same, new repository and the same tag. Two barriers line them up:
first they all push their blobs at once (so they race to create the repository), then
they all PUT their manifests at once (so they race on the repository's version and the
tag). Every client must get its 201 (version conflicts are retried inside the server,
never answered 5xx); every manifest is then retrievable by digest; the tag ends at one of
them; and the tag's history (read from the views once the server has stopped: there is
no HTTP endpoint for it yet) is a chain of exactly sixteen moves to exactly those
manifests, the last of which is where the tag is.
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cargohold.bootstrap import bootstrap
from cargohold.config import load_settings
from cargohold.domain.values import RepositoryName, Tag
from tests.fixtures.server import serving
from tests.fixtures.services import free_port
from tests.fixtures.v2client import OCI_MANIFEST, Response, V2Client, sha256

pytestmark = pytest.mark.timeout(300)

CLIENTS = 16
REPOSITORY = "race/app"
TAG = "latest"
ROUNDS = 2  # the first round also races to create the repository


@dataclass
class Outcome:
    statuses: list[tuple[str, int, bytes]] = field(default_factory=list)
    acked: dict[str, bytes] = field(default_factory=dict)  # manifest digest -> body
    failures: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _manifest(config: bytes, layer: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()


def _client(url: str, seed: str, barriers: list[threading.Barrier], out: Outcome) -> None:
    client = V2Client(url, timeout=120)  # a fresh connection per request

    def note(what: str, r: Response) -> Response:
        with out.lock:
            out.statuses.append((what, r.status, r.body[:300]))
        return r

    try:
        config = json.dumps({"client": seed}).encode()
        layer = f"layer of {seed}\n".encode() * 512
        body = _manifest(config, layer)
        barriers[0].wait()
        for blob in (config, layer):
            path = f"/v2/{REPOSITORY}/blobs/uploads/"
            note("blob", client.request("POST", path, blob, params={"digest": sha256(blob)}))
        barriers[1].wait()
        r = note("manifest", client.put_manifest(REPOSITORY, TAG, body))
        if r.status == 201:
            assert r.headers["docker-content-digest"] == sha256(body)
            with out.lock:
                out.acked[sha256(body)] = body
    except BaseException as e:
        with out.lock:
            out.failures.append(e)
        for barrier in barriers:
            barrier.abort()


def _race(url: str, round_: int) -> Outcome:
    out = Outcome()
    barriers = [threading.Barrier(CLIENTS, timeout=60) for _ in range(2)]
    threads = [
        threading.Thread(target=_client, args=(url, f"r{round_}c{i}", barriers, out))
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
        assert not t.is_alive(), "a client hung"
    assert out.failures == []
    return out


def _run(tmp_path: Path, args: list[str], settings_overrides: dict[str, str]) -> None:
    pushed: list[str] = []  # every acknowledged manifest, in every round
    with serving(*args, cwd=tmp_path) as server:
        client = V2Client(server.url)
        for round_ in range(ROUNDS):
            out = _race(server.url, round_)
            errors = [s for s in out.statuses if s[1] >= 500]
            assert errors == [], errors
            refused = [s for s in out.statuses if s[1] != 201]
            assert refused == [], refused
            assert len(out.acked) == CLIENTS
            for digest, body in out.acked.items():
                r = client.request(
                    "GET", f"/v2/{REPOSITORY}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
                )
                assert r.status == 200 and r.body == body, (digest, r.status)
            r = client.request("GET", f"/v2/{REPOSITORY}/manifests/{TAG}")
            assert r.status == 200
            current = r.headers["docker-content-digest"]
            assert current in out.acked
            assert sha256(r.body) == current
            pushed += out.acked
        assert client.tags(REPOSITORY) == [TAG]
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0

    settings = load_settings(environ={}, overrides=settings_overrides)
    container = bootstrap(settings)
    try:
        history = container.queries.tag_history(RepositoryName(REPOSITORY), Tag(TAG))
        tagged = container.queries.resolve_tag(RepositoryName(REPOSITORY), Tag(TAG))
    finally:
        container.close()
    assert [h.action for h in history] == ["move"] * len(pushed)
    to = [h.to_digest for h in history]
    # every acknowledged push moved the tag once: no move lost, none invented
    assert sorted(to) == sorted(pushed)
    # a chain: each move starts where the one before it ended
    assert [h.from_digest for h in history] == [None, *to[:-1]]
    # each round's moves come after the previous round's (the rounds did not overlap)
    for round_ in range(ROUNDS):
        chunk = set(to[round_ * CLIENTS : (round_ + 1) * CLIENTS])
        assert chunk == set(pushed[round_ * CLIENTS : (round_ + 1) * CLIENTS])
    assert str(tagged) == to[-1] == current


@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_sixteen_clients_push_to_one_tag_at_once(tmp_path: Path, workers: int) -> None:
    data_dir = str(tmp_path / "data")
    args = ["--data-dir", data_dir, "--listen", f"127.0.0.1:{free_port()}"]
    if workers > 1:
        args += ["--workers", str(workers)]
    _run(tmp_path, args, {"data_dir": data_dir})


@pytest.mark.postgres
@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_sixteen_clients_push_to_one_tag_at_once_on_postgres(
    tmp_path: Path, postgres_url: str, workers: int
) -> None:
    data_dir = str(tmp_path / "data")
    args = ["--data-dir", data_dir, "--listen", f"127.0.0.1:{free_port()}"]
    args += ["--database", postgres_url, "--workers", str(workers)]
    _run(tmp_path, args, {"data_dir": data_dir, "database": postgres_url})
