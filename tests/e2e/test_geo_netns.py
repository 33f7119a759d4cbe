"""Three sites of one geo registry as real ``cargohold serve`` processes, each in its own
network namespace, joined by veth pairs the test makes (``tests/fixtures/netns.py``):
A-B, B-C and A-C, each site every other's ``--peer`` by its address on their link. The
test reaches each site by its own client link, which it never cuts. Site B runs two
workers (one replicator per peer still reads: the lease).

Inside its namespace a site listens on port 5000 of every address: the namespace is
the test's own, so nothing else can bind there or reach it.

Phases, with writes at every site in each (new images, tags moved, one tag that all
sites move):

1. healthy links; every site converges after each round;
2. every link degraded (netem delay and loss where the kernel has netem; else a rate
   cap that queues and random drops, ``Hosts.degrade``); the sites converge;
3. A cut off from B and C (``ip link set down``) while all three go on writing; B and
   C converge between themselves and A sees none of it;
4. healed: how long until all three hold every acknowledged write is measured and
   must be under 2 s, and each site's ``site status`` shows every peer caught up;
5. C cut off while A pushes an image with a 3 MiB layer and A and B write on; C's links
   come back slow, and C is SIGKILLed while a layer is still arriving (its part file
   holds bytes), then started again on the same data dir.

Then: every acknowledged write is at every site (each site's own tags hold its last
write; the tag all sites moved holds one of the writes, the same everywhere; every
manifest pushed anywhere pulls everywhere, by digest); skopeo copies every tag out of
every site and gets the same bytes; after the sites stop, their logs hold the same
events, each once, their views are identical table by table (``tests.geo.site_views``),
and ``replay verify`` is clean at each.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cargohold.adapters.data_dir import DataDir
from cargohold.adapters.sqlite import SQLiteDatabase
from tests.fixtures.netns import Hosts, Link
from tests.fixtures.server import BASE_ENV, Server, serving
from tests.fixtures.tools import run_skopeo
from tests.fixtures.v2client import V2Client
from tests.geo import push_image, site_views, tag_digest, tags, until

pytestmark = pytest.mark.timeout(420)

TOKEN = "one-registry-three-sites-0123456789"
PORT = 5000
SITES = ("a", "b", "c")


@dataclass
class Site:
    name: str
    data_dir: Path
    peers: list[str]
    workers: int = 1
    server: Server | None = None
    stack: ExitStack = field(default_factory=ExitStack)

    @property
    def env(self) -> dict[str, str]:
        return {
            "CARGOHOLD_SITE_NAME": f"site-{self.name}",
            "CARGOHOLD_PEER_TOKEN": TOKEN,
            "CARGOHOLD_WORKERS": str(self.workers),
        }


@dataclass
class Registry:
    hosts: Hosts
    links: dict[frozenset[str], Link]
    sites: dict[str, Site]
    clients: dict[str, V2Client]
    tmp: Path
    #: (repository, tag) -> the digests acknowledged for it, in order, with the site.
    acked: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    #: manifest digest -> (repository, {digest: bytes}) of every image acknowledged.
    images: dict[str, tuple[str, dict[str, bytes]]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        site = self.sites[name]
        site.stack = ExitStack()
        args = ["--data-dir", str(site.data_dir), "--listen", f"0.0.0.0:{PORT}"]
        for peer in site.peers:
            args += ["--peer", peer]
        site.server = site.stack.enter_context(
            serving(*args, cwd=self.tmp, env=site.env, prefix=self.hosts.exec_prefix(name))
        )

    def stop(self, name: str) -> None:
        self.sites[name].stack.close()

    def kill(self, name: str) -> None:
        server = self.sites[name].server
        assert server is not None
        server.proc.kill()
        server.proc.wait()
        self.sites[name].stack.close()

    def link(self, a: str, b: str) -> Link:
        return self.links[frozenset((a, b))]

    def push(self, site: str, repository: str, tag: str, seed: str, layer: int = 2048) -> str:
        manifest, blobs = push_image(self.clients[site], repository, tag, seed, layer_bytes=layer)
        self.acked.setdefault((repository, tag), []).append((site, manifest))
        self.images[manifest] = (repository, blobs)
        return manifest

    def round(self, label: str, at: tuple[str, ...] = SITES) -> None:
        """Each site in ``at`` pushes a new image to its own tag and to the shared one."""
        for site in at:
            self.push(site, f"geo/{site}", "latest", f"{label}-{site}")
            self.push(site, f"geo/{site}", label, f"{label}-{site}-tagged")
            self.push(site, "geo/shared", "contested", f"{label}-{site}-contested")

    def expected_own(self) -> dict[tuple[str, str], str]:
        """The tags only one site writes: each holds that site's last write."""
        return {key: writes[-1][1] for key, writes in self.acked.items() if key[0] != "geo/shared"}

    def view(self, site: str) -> dict[tuple[str, str], str | None]:
        client = self.clients[site]
        seen: dict[tuple[str, str], str | None] = {}
        for repository in {key[0] for key in self.acked}:
            for tag in tags(client, repository):
                seen[(repository, tag)] = tag_digest(client, repository, tag)
        return seen

    def converged(self, among: tuple[str, ...] = SITES, writes_of: tuple[str, ...] = SITES) -> bool:
        """Whether the sites ``among`` show the same tags, holding every write the sites
        ``writes_of`` had acknowledged to their own tags."""
        views = [self.view(site) for site in among]
        if any(v != views[0] for v in views[1:]):
            return False
        own = {k: d for k, d in self.expected_own().items() if k[0][len("geo/") :] in writes_of}
        return all(views[0].get(key) == digest for key, digest in own.items())


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    Hosts.check()
    with Hosts() as hosts:
        for name in SITES:
            hosts.host(name)
        links = {
            frozenset(pair): hosts.link(*pair) for pair in (("a", "b"), ("b", "c"), ("a", "c"))
        }
        sites = {
            name: Site(
                name,
                tmp_path / name,
                [
                    f"http://{links[frozenset((name, other))].address_of(other)}:{PORT}"
                    for other in SITES
                    if other != name
                ],
                workers=2 if name == "b" else 1,
            )
            for name in SITES
        }
        clients = {name: V2Client(f"http://{hosts.client_address(name)}:{PORT}") for name in SITES}
        reg = Registry(hosts, links, sites, clients, tmp_path)
        try:
            for name in SITES:
                reg.start(name)
            yield reg
        finally:
            for name in SITES:
                reg.stop(name)


def test_three_sites_in_namespaces_converge_through_cuts_degradation_and_a_kill(
    registry: Registry,
) -> None:
    reg = registry
    # 1. Healthy.
    for label in ("r1", "r2"):
        reg.round(label)
        until(reg.converged, timeout=60)

    # 2. Every link degraded.
    for link in reg.links.values():
        reg.hosts.degrade(link)
    reg.round("degraded")
    until(reg.converged, timeout=90)
    for link in reg.links.values():
        reg.hosts.restore(link)
    print("degraded with:", reg.hosts.degradation)

    # 3. A cut off; everyone writes. Longer than a peer request's read timeout, so
    # that every replicator meets the cut.
    reg.hosts.cut(reg.link("a", "b"))
    reg.hosts.cut(reg.link("a", "c"))
    cut_at = time.monotonic()
    reg.round("split")
    until(lambda: reg.converged(among=("b", "c"), writes_of=("b", "c")), timeout=30)
    a_alone = reg.view("a")
    for site in ("b", "c"):
        assert a_alone.get((f"geo/{site}", "split")) is None  # A saw nothing of it
    assert reg.view("b").get(("geo/a", "split")) is None
    time.sleep(max(0.0, 7.0 - (time.monotonic() - cut_at)))
    reg.round("split2")

    # 4. Healed: every site holds every acknowledged write, quickly.
    reg.hosts.heal(reg.link("a", "b"))
    reg.hosts.heal(reg.link("a", "c"))
    healed_at = time.monotonic()
    until(reg.converged, timeout=60)
    recovered_s = time.monotonic() - healed_at
    print(f"converged {recovered_s:.2f} s after the links healed")
    assert recovered_s < 2.0, f"{recovered_s:.2f} s from healing to convergence"
    # And each replicator has its own peer again (a view may converge through another):
    until(lambda: all(_links_caught_up(reg.sites[name]) for name in SITES), timeout=10)
    caught_up_s = time.monotonic() - healed_at
    print(f"every link caught up {caught_up_s:.2f} s after healing")
    assert caught_up_s < 2.0, f"{caught_up_s:.2f} s from healing to every link caught up"
    for name in SITES:  # as an operator sees it
        peers = _site_status(reg, name)["peers"]
        assert len(peers) == 2
        for p in peers:
            assert p["error"] is None and p["lag_events"] == 0, p
            assert p["lag_seconds"] is not None and p["lag_seconds"] < 2, p

    # 5. C cut off while A pushes a 3 MiB layer; C killed while the layer arrives.
    reg.hosts.cut(reg.link("a", "c"))
    reg.hosts.cut(reg.link("b", "c"))
    big = reg.push("a", "geo/a", "big", "big", layer=3 * 1024 * 1024)
    reg.round("late", at=("a", "b"))
    until(lambda: reg.converged(among=("a", "b"), writes_of=("a", "b")), timeout=30)
    for pair in (("a", "c"), ("b", "c")):
        reg.hosts.heal(reg.link(*pair))
        reg.hosts.degrade(reg.link(*pair))
    parts = reg.sites["c"].data_dir / "geo-fetch"
    until(lambda: any(p.stat().st_size > 0 for p in parts.glob("*.part")), timeout=60)
    reg.kill("c")
    kept = sum(p.stat().st_size for p in parts.glob("*.part"))
    assert kept > 0
    for pair in (("a", "c"), ("b", "c")):
        reg.hosts.restore(reg.link(*pair))
    reg.start("c")
    until(reg.converged, timeout=60)
    until(lambda: all(_backlog_empty(reg, name) for name in SITES), timeout=90)

    # Every acknowledged write everywhere; the contested tag the same everywhere.
    contested = {d for _, d in reg.acked[("geo/shared", "contested")]}
    views = [reg.view(name) for name in SITES]
    assert views[0] == views[1] == views[2]
    assert views[0][("geo/shared", "contested")] in contested
    for name in SITES:
        client = reg.clients[name]
        for manifest, (repository, blobs) in reg.images.items():
            for digest, data in blobs.items():
                kind = "manifests" if digest == manifest else "blobs"
                r = client.request("GET", f"/v2/{repository}/{kind}/{digest}")
                assert r.status == 200 and r.body == data, (name, kind, digest, r.status)
    assert reg.view("c")[("geo/a", "big")] == big

    # skopeo pulls the same bytes at every site.
    for repository, tag in (("geo/a", "big"), ("geo/b", "latest"), ("geo/shared", "contested")):
        pulled = []
        for name in SITES:
            out = reg.tmp / f"pull-{name}-{repository.replace('/', '-')}-{tag}"
            host = f"{reg.hosts.client_address(name)}:{PORT}"
            run_skopeo("copy", f"docker://{host}/{repository}:{tag}", f"dir:{out}", timeout=120)
            pulled.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
        assert pulled[0] == pulled[1] == pulled[2], (repository, tag)

    for name in SITES:
        reg.stop(name)
    logs = [_events(reg.sites[name].data_dir) for name in SITES]
    assert logs[0] == logs[1] == logs[2]  # the same events at every site...
    for events in logs:  # ...each once
        assert len(events) == len(set(events))
    with _views(reg.sites["a"].data_dir) as a:
        at_a = site_views(a)
    for name in ("b", "c"):
        with _views(reg.sites[name].data_dir) as other:
            assert site_views(other) == at_a, name
    for name in SITES:
        verified = subprocess.run(
            [sys.executable, "-m", "cargohold.cli", "replay", "verify", "--data-dir",
             str(reg.sites[name].data_dir)],
            env={**BASE_ENV, **reg.sites[name].env},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]


def _site_status(reg: Registry, name: str) -> Any:
    site = reg.sites[name]
    printed = subprocess.run(
        [*reg.hosts.exec_prefix(name), sys.executable, "-m", "cargohold.cli", "site", "status",
         "--data-dir", str(site.data_dir)],
        env={**BASE_ENV, **site.env, "CARGOHOLD_PEERS": ",".join(site.peers)},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(printed.stdout)


def _links_caught_up(site: Site) -> bool:
    """Whether both of ``site``'s replicators last read their peer to its head, without
    an error (their ``peer_links`` rows, read as ``site status`` reads them, without
    the second a CLI takes to start)."""
    with sqlite3.connect(DataDir(site.data_dir).geo, timeout=10) as db:
        rows = db.execute("SELECT state, error, position, head FROM peer_links").fetchall()
    return len(rows) == 2 and all(
        state == "caught-up" and error is None and position == head
        for state, error, position, head in rows
    )


def _backlog_empty(reg: Registry, name: str) -> bool:
    return all(p["blob_backlog"]["blobs"] == 0 for p in _site_status(reg, name)["peers"])


def _events(data_dir: Path) -> list[tuple[str, int]]:
    """Every event of a site's log, by stream and version, sorted."""
    with sqlite3.connect(data_dir / "events.sqlite") as db:
        rows = db.execute("SELECT originator_id, originator_version FROM stored_events").fetchall()
    return sorted((str(stream), int(version)) for stream, version in rows)


@contextmanager
def _views(data_dir: Path) -> Iterator[SQLiteDatabase]:
    db = SQLiteDatabase(data_dir / "views.sqlite")
    try:
        yield db
    finally:
        db.close()
