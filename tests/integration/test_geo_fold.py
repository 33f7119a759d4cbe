"""The geo fold (``projections/merge.py``), proven: sites that hold the same events have
the same read models, whatever order the events reached each of them in.

Two or three sites, each with its own log and views, write to repositories of the same
names through their own streams (the aggregates, as the commands do), with clocks out of
step. Events travel between them in random pieces, in any order that keeps each
stream's versions in order (a replicator ships a peer's log in its order), forwarded by
whichever site holds them, sent twice, or not at all for a while (a partition). After
every step, sites holding the same events have identical views, table by table as
``replay verify`` compares them, but for the columns that name local log positions.
At the end every site receives everything, all agree, and ``replay verify`` is clean at
each.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cargohold.adapters.data_dir import DataDir
from cargohold.adapters.eventstore import LogReader, RegistryLog, log_environment
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.bootstrap import Container, bootstrap
from cargohold.domain.clock import HybridLogicalClock, epoch_ms
from cargohold.domain.context import EventContext
from cargohold.domain.identity import Principal, PrincipalKind, RepositoryRole, Visibility
from cargohold.domain.manifest import OCI_MANIFEST, ParsedManifest
from cargohold.domain.repository import Repository
from cargohold.domain.repository_merge import MergedState, adopt, fold
from cargohold.domain.values import Actor, ActorKind, Descriptor, Digest, MediaType, RepositoryName
from cargohold.domain.values import Tag as TagName
from cargohold.projections.runner import ProjectionRunner
from cargohold.replay.rebuild import verify
from tests.factories import ALICE, push_image, settings_for
from tests.geo import site_views
from tests.operations import verify as replay_verify

NAMES = ("acme/app", "acme/lib")
TAGS = ("latest", "v1", "v2")
LAYER = MediaType("application/vnd.oci.image.layer.v1.tar+gzip")
CONFIG = MediaType("application/vnd.oci.image.config.v1+json")
START_MS = 1_800_000_000_000
APP = RepositoryName("acme/app")


def image(n: int) -> tuple[Descriptor, Descriptor, ParsedManifest]:
    config = Descriptor(CONFIG, Digest.of(f"config {n}".encode()), 20 + n)
    layer = Descriptor(LAYER, Digest.of(f"layer {n}".encode()), 1000 + n)
    manifest = ParsedManifest(
        digest=Digest.of(f"manifest {n}".encode()),
        media_type=OCI_MANIFEST,
        size=300 + n,
        config=config,
        layers=(layer,),
        manifests=(),
        subject=None,
        artifact_type=None,
        annotations=None,
    )
    return config, layer, manifest


class Site:
    """One site: its log, its views, its clock (``skew`` ms off the shared time)."""

    def __init__(
        self, root: Path, site_id: UUID, now: list[int], skew: int, all_ids: list[UUID]
    ) -> None:
        root.mkdir()
        self.root = root
        self.site_id = site_id
        self.all_ids = all_ids
        self.clock = HybridLogicalClock(wall_ms=lambda: now[0] + skew)
        self.log = RegistryLog(log_environment(sqlite_path=root / "log.sqlite"))
        self.db = SQLiteDatabase(root / "views.sqlite")
        self.reader = LogReader(self.log)
        self.runner = ProjectionRunner(self.db, self.reader, batch_size=7)
        self.runner.create_tables()

    def close(self) -> None:
        self.db.close()
        self.log.close()

    def ctx(self) -> EventContext:
        return EventContext(Actor(ActorKind.USER, "alice"), self.site_id, self.clock.now(), "r")

    def merged(self, name: str) -> MergedState:
        """The fold of every site's stream of ``name`` this site holds, as the registry's
        commands decide on it (``domain/repository_merge.py``)."""
        events: list[Any] = []
        for site_id in self.all_ids:
            stream = Repository.create_id(site_id, RepositoryName(name))
            events.extend(self.log.events.get(originator_id=stream))
        return fold(RepositoryName(name), events)

    def own(self, name: str) -> Repository | None:
        """This site's stream of ``name`` holding the merged state, as the commands load
        it (a new stream, joining the name, if only other sites' streams have it live),
        with the clock past every stamp met; None if it is live nowhere and this site
        has no stream of it."""
        stream = Repository.create_id(self.site_id, RepositoryName(name))
        merged = self.merged(name)
        if merged.last_hlc is not None:
            self.clock.observe(merged.last_hlc, 60_000)
        if self.log.recorder.select_events(stream, limit=1):
            repo: Repository = self.log.repository.get(stream)
        elif merged.live:
            repo = Repository.create(RepositoryName(name), self.ctx())
        else:
            return None
        adopt(repo, merged)
        return repo

    def live(self, name: str) -> Repository:
        """This site's stream of ``name``, created or recreated if need be."""
        repo = self.own(name)
        if repo is None:
            return Repository.create(RepositoryName(name), self.ctx())
        repo.recreate(self.ctx())
        return repo

    def folded_views(self, name: str) -> dict[str, Any]:
        """The rows of ``name`` in the views, in the shape of the merged state."""
        db, q = self.db, (name,)
        live = db.query("SELECT visibility FROM repositories WHERE name = ?", q)
        if not live:
            return {"live": False}
        return {
            "live": True,
            "visibility": live[0][0],
            "tags": dict(db.query("SELECT tag, digest FROM tags WHERE repository = ?", q)),
            "manifests": {
                r[0] for r in db.query("SELECT digest FROM manifests WHERE repository = ?", q)
            },
            "blobs": dict(db.query("SELECT digest, size FROM blob_links WHERE repository = ?", q)),
            "permissions": {
                (r[0], r[1]): r[2]
                for r in db.query(
                    "SELECT principal_kind, principal_name, role FROM repository_permissions "
                    "WHERE repository = ?",
                    q,
                )
            },
            "expirations": dict(
                db.query(
                    "SELECT tag, expires_ms FROM tag_lifetimes WHERE repository = ? "
                    "AND end_ms IS NULL AND expires_ms IS NOT NULL",
                    q,
                )
            ),
        }

    def folded_state(self, name: str) -> dict[str, Any]:
        """The merged state of ``name``, in the shape of ``folded_views``."""
        merged = self.merged(name)
        repo = merged.repository
        if repo is None or repo.deleted:
            return {"live": False}
        return {
            "live": True,
            "visibility": repo.visibility.value,
            "tags": {str(t): str(d) for t, d in repo.tags.items()},
            "manifests": {str(d) for d in repo.manifests},
            "blobs": {str(d): size for d, size in repo.blobs.items()},
            "permissions": {
                (p.kind.value, p.name): role.value for p, role in repo.permissions.items()
            },
            "expirations": {str(t): epoch_ms(at) for t, at in repo.tag_expirations.items()},
        }

    def save(self, repo: Repository) -> None:
        self.log.save(repo)
        self.runner.catch_up()

    def held(self) -> set[tuple[str, int]]:
        return {(str(s.originator_id), s.originator_version) for _, s in self.stored()}

    def stored(self) -> list[tuple[int, StoredEvent]]:
        """Every event as stored (position, the library's record), in log order."""
        rows = self.log.recorder.select_notifications(start=1, limit=1_000_000)
        return [
            (
                n.id,
                StoredEvent(
                    originator_id=n.originator_id,
                    originator_version=n.originator_version,
                    topic=n.topic,
                    state=n.state,
                ),
            )
            for n in rows
        ]

    def receive(self, events: list[StoredEvent]) -> int:
        """Store the events this site lacks (in order), advance the clock past their
        stamps, and fold them; how many were new."""
        held = self.held()
        new = [e for e in events if (str(e.originator_id), e.originator_version) not in held]
        if new:
            self.log.recorder.insert_events(new)
            for _, event in self.reader.read(self.reader.head() - len(new), len(new)):
                self.clock.observe(event.hlc, 60_000)
        self.runner.catch_up()
        return len(new)

    def views(self) -> dict[str, list[tuple[Any, ...]]]:
        return site_views(self.db)


class GeoSites(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="geo-fold-"))
        self.now = [START_MS]
        self.sites: list[Site] = []

    @initialize(
        skews=st.lists(st.integers(-1500, 1500), min_size=2, max_size=3),
        ids=st.lists(st.uuids(), min_size=3, max_size=3, unique=True),
    )
    def sites_up(self, skews: list[int], ids: list[UUID]) -> None:
        ids = ids[: len(skews)]
        self.sites = [
            Site(self.tmp / f"s{i}", ids[i], self.now, skew, ids) for i, skew in enumerate(skews)
        ]

    def teardown(self) -> None:
        try:
            if self.sites:
                self._everything_everywhere()
        finally:
            for site in self.sites:
                site.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _site(self, data: st.DataObject) -> Site:
        return self.sites[data.draw(st.integers(0, len(self.sites) - 1))]

    # -- time ----------------------------------------------------------------------------

    @rule(ms=st.integers(0, 2000))
    def time_passes(self, ms: int) -> None:
        self.now[0] += ms

    # -- writes at one site ------------------------------------------------------------

    @rule(
        data=st.data(), name=st.sampled_from(NAMES), n=st.integers(0, 3), tag=st.sampled_from(TAGS)
    )
    def push(self, data: st.DataObject, name: str, n: int, tag: str) -> None:
        site = self._site(data)
        repo = site.live(name)
        config, layer, manifest = image(n)
        ctx = site.ctx()
        repo.link_blob(config.digest, config.size, ctx)
        repo.link_blob(layer.digest, layer.size, ctx)
        repo.push_manifest(manifest, ctx)
        repo.tag(TagName(tag), manifest.digest, ctx)
        site.save(repo)

    @rule(data=st.data(), name=st.sampled_from(NAMES), tag=st.sampled_from(TAGS))
    def untag(self, data: st.DataObject, name: str, tag: str) -> None:
        site = self._site(data)
        repo = site.own(name)
        if repo is not None and not repo.deleted:
            ctx = site.ctx()
            repo.expire_due(ctx)
            if TagName(tag) in repo.tags:
                repo.untag(TagName(tag), ctx)
            site.save(repo)

    @rule(data=st.data(), name=st.sampled_from(NAMES), n=st.integers(0, 3))
    def delete_manifest(self, data: st.DataObject, name: str, n: int) -> None:
        site = self._site(data)
        repo = site.own(name)
        digest = image(n)[2].digest
        if repo is not None and not repo.deleted and digest in repo.manifests:
            repo.delete_manifest(digest, site.ctx())
            site.save(repo)

    @rule(data=st.data(), name=st.sampled_from(NAMES), n=st.integers(0, 3))
    def unlink_layer(self, data: st.DataObject, name: str, n: int) -> None:
        site = self._site(data)
        repo = site.own(name)
        digest = image(n)[1].digest
        if repo is not None and not repo.deleted and digest in repo.blobs:
            repo.unlink_blob(digest, site.ctx())
            site.save(repo)

    @rule(data=st.data(), name=st.sampled_from(NAMES), tag=st.sampled_from(TAGS))
    def expire_soon(self, data: st.DataObject, name: str, tag: str) -> None:
        site = self._site(data)
        repo = site.own(name)
        if repo is not None and not repo.deleted:
            ctx = site.ctx()
            repo.expire_due(ctx)
            if TagName(tag) in repo.tags:
                at = datetime.fromtimestamp((ctx.hlc.wall_ms + 1000) / 1000, tz=UTC)
                repo.set_tag_expiration(TagName(tag), at, ctx)
            site.save(repo)

    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def sweep(self, data: st.DataObject, name: str) -> None:
        site = self._site(data)
        repo = site.own(name)
        if repo is not None and not repo.deleted:
            repo.expire_due(site.ctx())
            site.save(repo)

    @rule(
        data=st.data(),
        name=st.sampled_from(NAMES),
        user=st.sampled_from(("bob", "carol")),
        role=st.sampled_from([*RepositoryRole, None]),
    )
    def grant(self, data: st.DataObject, name: str, user: str, role: RepositoryRole | None) -> None:
        site = self._site(data)
        principal = Principal(PrincipalKind.USER, user)
        if role is not None:
            repo = site.live(name)
            repo.grant(principal, role, site.ctx())
        else:
            own = site.own(name)
            if own is None or own.deleted or principal not in own.permissions:
                return
            repo = own
            repo.revoke(principal, site.ctx())
        site.save(repo)

    @rule(data=st.data(), name=st.sampled_from(NAMES), public=st.booleans())
    def visibility(self, data: st.DataObject, name: str, public: bool) -> None:
        site = self._site(data)
        repo = site.own(name)
        if repo is not None and not repo.deleted:
            repo.set_visibility(Visibility.PUBLIC if public else Visibility.PRIVATE, site.ctx())
            site.save(repo)

    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def delete_repository(self, data: st.DataObject, name: str) -> None:
        site = self._site(data)
        repo = site.own(name)
        if repo is not None and not repo.deleted:
            repo.delete(site.ctx())
            site.save(repo)

    # -- shipping ----------------------------------------------------------------------

    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        """Part of what one site holds reaches another: one stream's next events, in
        version order, whoever wrote them (forwarding)."""
        source, target = self._site(data), self._site(data)
        if source is target:
            return
        held = target.held()
        missing: dict[UUID | str, list[StoredEvent]] = {}
        for _, stored in source.stored():
            if (str(stored.originator_id), stored.originator_version) not in held:
                missing.setdefault(stored.originator_id, []).append(stored)
        if not missing:
            return
        stream = data.draw(st.sampled_from(sorted(missing, key=str)))
        events = missing[stream]
        count = data.draw(st.integers(1, len(events)))
        target.receive(events[:count])

    @rule(data=st.data())
    def ship_again(self, data: st.DataObject) -> None:
        """A page the target holds already arrives again: nothing changes."""
        source, target = self._site(data), self._site(data)
        held = target.held()
        again = [
            s for _, s in source.stored() if (str(s.originator_id), s.originator_version) in held
        ]
        before = target.views()
        assert target.receive(again) == 0
        assert target.views() == before

    # -- what must hold ----------------------------------------------------------------

    @rule(data=st.data())
    def replay_verify(self, data: st.DataObject) -> None:
        """A site's views are what a replay of its log in its own order makes."""
        site = self._site(data)
        result = verify(site.db, site.reader, site.runner, DataDir(site.root), quiet=True)
        assert result.differences == ()

    @invariant()
    def same_events_same_views(self) -> None:
        by_events: dict[frozenset[tuple[str, int]], Site] = {}
        for site in self.sites:
            key = frozenset(site.held())
            first = by_events.setdefault(key, site)
            if first is not site:
                assert site.views() == first.views()

    @invariant()
    def commands_decide_on_what_the_views_show(self) -> None:
        """At every site, the merged state the commands decide on is the views' rows."""
        for site in self.sites:
            for name in NAMES:
                assert site.folded_state(name) == site.folded_views(name), name

    def _everything_everywhere(self) -> None:
        while True:
            moved = 0
            for source in self.sites:
                for target in self.sites:
                    if source is not target:
                        moved += target.receive([s for _, s in source.stored()])
            if not moved:
                break
        first = self.sites[0].views()
        for site in self.sites[1:]:
            assert site.views() == first
        for site in self.sites:
            result = verify(site.db, site.reader, site.runner, DataDir(site.root), quiet=True)
            assert result.differences == ()


GeoSites.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestGeoFold = GeoSites.TestCase


# -- through the command layer, on each backend ----------------------------------------


def _ship(source: Container, target: Container) -> int:
    """Every event ``source`` holds and ``target`` lacks, in ``source``'s log order."""
    recorder = target.log.recorder
    shipped = 0
    for n in source.log.recorder.select_notifications(start=1, limit=1_000_000):
        if recorder.select_events(n.originator_id, gt=n.originator_version - 1, limit=1):
            continue
        recorder.insert_events(
            [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)]
        )
        shipped += 1
    target.runner.catch_up()
    return shipped


def test_two_sites_pushing_one_name_converge(
    request: pytest.FixtureRequest, container: Container, tmp_path: Path
) -> None:
    """Both sites write ``acme/app`` before they hear of each other. Then, at both: the
    later push of ``both`` wins it, the later untag of ``gone`` wins over the earlier
    push, the manifests of both are in it, and each replays clean. The site on this test's
    backend receives the other's older events last, so it folds the name again."""
    other = bootstrap(settings_for(request, "sqlite", tmp_path / "other"))
    try:
        older = push_image(other, "acme/app", "both", seed="other")
        push_image(other, "acme/app", "other-only", seed="other")
        push_image(other, "acme/app", "gone", seed="other")
        newer = push_image(container, "acme/app", "both", seed="here")
        push_image(container, "acme/app", "gone", seed="here")
        other.registry.untag(APP, TagName("gone"), ALICE)
        assert _ship(container, other) > 0 and _ship(other, container) > 0
        for site in (container, other):
            assert site.queries.tags(APP) == ["both", "other-only"]
            assert site.queries.resolve_tag(APP, TagName("both")) == newer.digest
            assert site.queries.manifest(APP, older.digest) is not None
            assert site.queries.catalog() == ["acme/app"]
            assert replay_verify(site, quiet=True).differences == ()
        assert _ship(container, other) == 0 and _ship(other, container) == 0
    finally:
        other.close()
