"""A large, realistic event log, written fast: the input of the ``replay rebuild`` figures.

``generate(data_dir, n_events)`` makes a cargohold data dir whose log holds about
``n_events`` events (it stops after the command that reaches the count, so a few more),
produced by the domain aggregates themselves (their guards run, their events are the
real classes with real provenance), and stored with the application's own mapper and
recorder, in big batches of one transaction each. That skips only what a command adds
around the aggregate (the HTTP request, the load of the aggregate, one transaction and
one read-your-writes wait per command), none of which is in the log.

The mix, as a registry's log looks after a while (shares of the events, roughly):

- identity (~2%): users, organisations with members, teams, robots, default permissions;
- repositories (~1%): created (with the grants of their organisation), some made public,
  a few deleted and recreated later;
- blobs linked (~25%): a config and 1-4 layers per image, layers shared between images;
- manifests pushed (~12%), now and then one deleted (its tags deleted first);
- tags (~55%): moved to new manifests (``latest`` and friends move again and again),
  deleted now and then; a few "hot" repositories collect thousands of tags, as CI
  repositories do;
- permission grants and revocations (~3%).

Commands of a few dozen repositories at a time interleave, as concurrent pushers do.
Manifest bodies and blobs are not put in the blob store (only the log matters for
replay; with ``blobs``, small ones are), and the live views are caught up at the end
(``catch_up``), so the data dir is a consistent registry, ready for ``cargohold replay
rebuild``. Snapshots are taken as a server would
(every ``snapshot_interval`` events of an aggregate).
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from cargohold.bootstrap import Container, bootstrap
from cargohold.config import load_settings
from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.clock import HybridLogicalClock
from cargohold.domain.context import EventContext
from cargohold.domain.identity import (
    AccountName,
    NamespaceKind,
    Principal,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
    Visibility,
)
from cargohold.domain.manifest import parse_manifest
from cargohold.domain.repository import Repository
from cargohold.domain.values import Actor, ActorKind, Digest, RepositoryName, Tag

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

BATCH = 5_000  # events per recorder transaction
ACTIVE = 32  # repositories whose commands interleave
# NOTE: a hash-shaped placeholder that no login ever checks; not a secret.
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$YmVuY2g$YmVuY2g"  # noqa: S105


class _Writer:
    """Collects the pending events of aggregates and stores them in big batches."""

    def __init__(self, container: Container) -> None:
        self.log = container.log
        self.interval = container.settings.snapshot_interval
        self.pending: list[Any] = []
        self.written = 0
        self.snapshot_due: dict[UUID, int] = {}

    def collect(self, aggregate: Aggregate) -> None:
        for event in aggregate.collect_events():
            self.pending.append(event)
            if event.originator_version % self.interval == 0:
                self.snapshot_due[event.originator_id] = event.originator_version
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        to_stored = self.log.mapper.to_stored_event
        self.log.recorder.insert_events([to_stored(e) for e in self.pending])
        self.written += len(self.pending)
        self.pending.clear()
        for aggregate_id, version in self.snapshot_due.items():
            self.log.take_snapshot(aggregate_id, version=version)
        self.snapshot_due.clear()

    @property
    def count(self) -> int:
        return self.written + len(self.pending)


class _Generator:
    def __init__(
        self, container: Container, writer: _Writer, rng: random.Random, blobs: bool = False
    ) -> None:
        self.c = container
        self.blobs = blobs
        self.sizes: dict[Digest, int] = {}  # with ``blobs``: the bytes put of each
        self.w = writer
        self.rng = rng
        self.clock = HybridLogicalClock()
        self.site_id = container.site_id
        self.users: list[AccountName] = []
        self.orgs: list[Organization] = []
        self.layers: list[Digest] = []  # shared layers, as base images are

    def ctx(self, actor: Actor) -> EventContext:
        return EventContext(
            actor=actor,
            site_id=self.site_id,
            hlc=self.clock.now(),
            request_id=f"req-{self.rng.getrandbits(48):012x}",
        )

    def random_digest(self) -> Digest:
        if not self.blobs:
            return Digest.of(self.rng.getrandbits(64).to_bytes(8, "big"))
        return self.put(self.rng.randbytes(self.rng.randint(1_000, 8_000)))

    def put(self, data: bytes) -> Digest:
        """Put ``data`` in the blob store (with ``blobs``); its digest."""
        digest, size = self.c.blobs.put(io.BytesIO(data))
        self.sizes[digest] = size
        return digest

    # -- identity ----------------------------------------------------------------------

    def user(self) -> AccountName:
        name = AccountName(f"user{len(self.users):05d}")
        ctx = self.ctx(Actor.system())
        claim = NamespaceClaim.create(name, NamespaceKind.USER, ctx)
        account = Account.create(name, f"{name}@example.com", PASSWORD_HASH, ctx)
        self.w.collect(claim)
        self.w.collect(account)
        self.users.append(name)
        return name

    def organization(self) -> Organization:
        owner = self.rng.choice(self.users) if self.users else self.user()
        name = AccountName(f"org{len(self.orgs):04d}")
        ctx = self.ctx(Actor(ActorKind.USER, str(owner)))
        claim = NamespaceClaim.create(name, NamespaceKind.ORGANIZATION, ctx)
        org = Organization.create(name, owner, ctx)
        for _ in range(self.rng.randint(1, 4)):
            org.add_member(self.user(), ctx)
        team = TeamName("developers")
        org.create_team(team, TeamRole.MEMBER, ctx, description="people who push")
        for member in sorted(org.members)[:3]:
            org.add_team_member(team, member, ctx)
        org.create_robot(RobotShortName("ci"), PASSWORD_HASH, ctx, description="CI")
        org.set_default_permission(org.team_principal(team), RepositoryRole.WRITE, ctx)
        org.set_default_permission(
            org.robot_principal(RobotShortName("ci")), RepositoryRole.WRITE, ctx
        )
        self.w.collect(claim)
        self.w.collect(org)
        self.orgs.append(org)
        return org

    # -- repositories ------------------------------------------------------------------

    def repository(self, index: int) -> Iterator[None]:
        """The life of one repository, one command per step (so lives interleave)."""
        if not self.orgs or self.rng.random() < 0.05:
            self.organization()
        org = self.rng.choice(self.orgs)
        pusher = Actor(ActorKind.USER, str(self.rng.choice(sorted(org.members))))
        name = RepositoryName(f"{org.name}/app{index:06d}")
        ctx = self.ctx(pusher)
        repo = Repository.create(name, ctx)
        for principal, role in sorted(org.default_permissions.items(), key=lambda i: str(i[0])):
            repo.grant(principal, role, ctx)
        if self.rng.random() < 0.3:
            repo.set_visibility(Visibility.PUBLIC, ctx)
        self.w.collect(repo)
        yield
        hot = self.rng.random() < 0.01
        pushes = self.rng.randint(200, 2_000) if hot else self.rng.randint(1, 8)
        manifests: list[Digest] = []
        for push in range(pushes):
            actor = pusher if self.rng.random() < 0.9 else Actor(ActorKind.ROBOT, f"{org.name}+ci")
            ctx = self.ctx(actor)
            if not hot or push % 20 == 0 or not manifests:
                manifests.append(self.push(repo, ctx))
            digest = manifests[-1]
            tag = Tag(f"build-{push}") if hot else Tag(f"v{push}")
            repo.tag(tag, digest, ctx)
            repo.tag(Tag("latest"), digest, ctx)
            if self.rng.random() < 0.05 and len(repo.tags) > 2:
                repo.untag(self.rng.choice(sorted(repo.tags)), ctx)
            self.w.collect(repo)
            yield
            if self.rng.random() < 0.03:
                self.access(repo, org)
                yield
        if len(manifests) > 2 and self.rng.random() < 0.2:
            repo.delete_manifest(manifests[0], self.ctx(pusher))
            self.w.collect(repo)
            yield
        if self.rng.random() < 0.01:
            repo.delete(self.ctx(pusher))
            self.w.collect(repo)
            yield
            repo.recreate(self.ctx(pusher))
            self.push(repo, self.ctx(pusher))
            self.w.collect(repo)

    def push(self, repo: Repository, ctx: EventContext) -> Digest:
        """Link a config and 1-4 layers (mostly shared ones), push a manifest on them."""
        if len(self.layers) < 50 or self.rng.random() < 0.2:
            self.layers.append(self.random_digest())
        layers = self.rng.sample(self.layers, self.rng.randint(1, min(4, len(self.layers))))
        config = self.random_digest()
        sizes = {
            d: self.sizes.get(d) or self.rng.randint(1_000, 50_000_000) for d in (config, *layers)
        }
        for blob, size in sizes.items():
            repo.link_blob(blob, size, ctx)
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": str(config), "size": sizes[config]},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": str(d), "size": sizes[d]} for d in layers
            ],
        }
        body = json.dumps(document, sort_keys=True).encode()
        digest = self.put(body) if self.blobs else Digest.of(body)
        repo.push_manifest(parse_manifest(body, OCI_MANIFEST, digest), ctx)
        return digest

    def access(self, repo: Repository, org: Organization) -> None:
        owner = min(org.team_members[TeamName("owners")])
        ctx = self.ctx(Actor(ActorKind.USER, str(owner)))
        member = self.rng.choice(sorted(org.members))
        principal = Principal.user(str(member))
        if member != repo.name.namespace and principal in repo.permissions:
            repo.revoke(principal, ctx)
        elif member != repo.name.namespace:
            repo.grant(principal, self.rng.choice(list(RepositoryRole)), ctx)
        self.w.collect(repo)


def generate(
    data_dir: Path, n_events: int, *, seed: int = 5, catch_up: bool = True, blobs: bool = False
) -> int:
    """Write a log of about ``n_events`` events into a new data dir; return the count.

    ``data_dir`` must be empty or absent. With ``catch_up`` the live views are brought up
    to the end of the log (as a server's start would), which costs about one replay.
    With ``blobs`` every blob and manifest the log names is in the blob store, made of
    1-8 KB of random bytes (a geo peer fetches them: ``bench.geo``).
    """
    data_dir = Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValueError(f"{data_dir} is not empty")
    settings = load_settings(environ={}, overrides={"data_dir": data_dir, "auth": False})
    container = bootstrap(settings)
    try:
        writer = _Writer(container)
        rng = random.Random(seed)  # noqa: S311 - content, not secrets
        generator = _Generator(container, writer, rng, blobs)
        lives: list[Iterator[None]] = []
        index = 0
        while writer.count < n_events:
            while len(lives) < ACTIVE:
                lives.append(generator.repository(index))
                index += 1
            life = generator.rng.randrange(len(lives))
            if next(lives[life], StopIteration) is StopIteration:
                lives.pop(life)
        writer.flush()
        if catch_up:
            container.runner.catch_up()
        return writer.written
    finally:
        container.close()


if __name__ == "__main__":  # pragma: no cover - python -m bench.eventlog DIR N
    import sys
    import time

    started = time.perf_counter()
    count = generate(Path(sys.argv[1]), int(sys.argv[2]), catch_up="--no-catch-up" not in sys.argv)
    print(f"{count} events in {time.perf_counter() - started:.1f} s")
