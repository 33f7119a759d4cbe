"""Export and import bundles between two sites that share nothing (real stores, no mocks).

The source runs on SQLite + filesystem with an at-rest cipher; the destination on
SQLite + filesystem without one, or on PostgreSQL + MinIO with another key: a bundle is
site-neutral. One case also exports from PostgreSQL.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cargohold import cli
from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, bootstrap
from cargohold.commands.unit_of_work import Caller
from cargohold.config import load_settings
from cargohold.domain.accounts import Account
from cargohold.domain.clock import HybridLogicalClock
from cargohold.domain.context import EventContext
from cargohold.domain.errors import NameTaken, ReplicatedReadOnly
from cargohold.domain.identity import (
    AccountName,
    ApiScope,
    Principal,
    PrincipalKind,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
)
from cargohold.domain.values import Actor, ActorKind, Digest, RepositoryName, Tag
from cargohold.replay.bundle import BundleError, ImportRefused
from cargohold.replay.bundle_format import (
    CHUNK,
    BlobStart,
    BundleReader,
    BundleWriter,
    EventFrame,
    Header,
)
from tests.factories import push_image
from tests.operations import export_bundle, import_bundle, verify

SOURCE_KEY = base64.b64encode(b"s" * 32).decode()
DEST_KEY = base64.b64encode(b"d" * 16).decode()

ALICE = Caller(Actor(ActorKind.USER, "alice"), "req-alice")
CAROL = Caller(Actor(ActorKind.USER, "carol"), "req-carol")
SYSTEM = Caller(Actor.system(), "setup")


def _settings(request: pytest.FixtureRequest, kind: str, data: Path, key: str | None) -> Any:
    overrides: dict[str, Any] = {"data_dir": data, "snapshot_interval": 5}
    if key:
        overrides["cipher_key"] = key
    if kind == "postgres":
        overrides["database"] = request.getfixturevalue("postgres_url")
        minio = request.getfixturevalue("minio_server")
        overrides.update(
            blob_store="s3",
            s3_endpoint=minio.endpoint,
            s3_access_key=minio.access_key,
            s3_secret_key=minio.secret_key,
            s3_bucket=request.getfixturevalue("minio_bucket"),
            s3_secure=False,
        )
    return load_settings(environ={}, overrides=overrides)


Site = Callable[..., Container]


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    opened: list[Container] = []
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "postgres" in callspec.params.get("pair", ()):
        # NOTE: set up before the sites, so torn down after them: a database dropped
        # under an open pool makes the pool's close wait for its timeouts.
        for fixture in ("postgres_url", "minio_server", "minio_bucket"):
            request.getfixturevalue(fixture)

    def make(
        name: str, kind: str = "sqlite", key: str | None = None, wall_ms: Any = None
    ) -> Container:
        extra = {} if wall_ms is None else {"wall_ms": wall_ms}
        c = bootstrap(
            _settings(request, kind, tmp_path / name, key),
            hasher=Argon2PasswordHasher.cheap(),
            **extra,
        )
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


def populate(c: Container) -> dict[str, Any]:
    """Three repositories with history and permissions, and one that stays home."""
    access = c.identity
    for user in ("alice", "bob", "carol"):
        access.create_user(AccountName(user), f"{user}@example.com", f"{user}-pw-123", SYSTEM)
    access.create_organization(AccountName("acme"), AccountName("alice"), ALICE)
    access.upsert_team(AccountName("acme"), TeamName("devs"), TeamRole.MEMBER, ALICE)
    access.add_team_member(AccountName("acme"), TeamName("devs"), AccountName("bob"), ALICE)
    access.create_robot(AccountName("acme"), RobotShortName("ci"), ALICE)
    images = {
        "acme/app:1": push_image(c, "acme/app", "latest", seed="a1", caller=ALICE),
        "acme/app:2": push_image(c, "acme/app", "latest", seed="a2", caller=ALICE),  # moved
        "acme/app:old": push_image(c, "acme/app", "old", seed="a3", caller=ALICE),
        "acme/web": push_image(c, "acme/web", "v1", seed="w1", caller=ALICE),
        "alice/tool": push_image(c, "alice/tool", "latest", seed="t1", caller=ALICE),
        "carol/home": push_image(c, "carol/home", "latest", seed="h1", caller=CAROL),
    }
    c.registry.untag(RepositoryName("acme/app"), Tag("old"), ALICE)
    c.registry.grant(
        RepositoryName("acme/app"),
        Principal(PrincipalKind.ROBOT, "acme+ci"),
        RepositoryRole.WRITE,
        ALICE,
    )
    c.registry.grant(
        RepositoryName("acme/web"),
        Principal(PrincipalKind.TEAM, "acme/devs"),
        RepositoryRole.READ,
        ALICE,
    )
    c.registry.grant(
        RepositoryName("alice/tool"),
        Principal(PrincipalKind.USER, "bob"),
        RepositoryRole.READ,
        ALICE,
    )
    return images


EXPORTED = ("acme/app", "acme/web", "alice/tool")


def _rows(c: Container, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with c.views_db.transaction(write=False) as cur:
        return sorted((tuple(r) for r in cur.execute(sql, params).fetchall()), key=repr)


def _registry_rows(c: Container) -> dict[str, list[tuple[Any, ...]]]:
    """The views of the exported repositories, without the site-local positions."""
    names = EXPORTED
    marks = ",".join("?" for _ in names)
    return {
        table: _rows(c, f"SELECT {cols} FROM {table} WHERE repository IN ({marks})", names)
        for table, cols in {
            "tags": "repository, tag, digest, updated_at",
            "tag_history": (
                "repository, tag, action, from_digest, to_digest, actor_name, site_id, at"
            ),
            "manifests": "repository, digest, media_type, size, config_digest",
            "blob_links": "repository, digest, size",
            "repository_permissions": "repository, principal_kind, principal_name, role",
            "tag_lifetimes": "repository, tag, digest, start_ms, end_ms",
        }.items()
    } | {
        "teams": _rows(c, "SELECT org, team, role FROM teams WHERE org = 'acme'"),
        "team_members": _rows(c, "SELECT org, team, username FROM team_members"),
        "robots": _rows(c, "SELECT namespace, short_name, token_hash FROM robots"),
        "accounts": _rows(c, "SELECT name, email FROM accounts WHERE name <> 'carol'"),
    }


def _blob(c: Container, digest: Digest) -> bytes:
    return b"".join(c.blobs.read(digest))


def _frames(path: Path) -> list[Any]:
    with path.open("rb") as f:
        return list(BundleReader(f, str(path)).frames())


PAIRS = [
    pytest.param(("sqlite", "sqlite"), id="sqlite-to-sqlite"),
    pytest.param(("sqlite", "postgres"), id="sqlite-to-postgres+minio", marks=pytest.mark.postgres),
    pytest.param(("postgres", "sqlite"), id="postgres+minio-to-sqlite", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize("pair", PAIRS)
def test_repositories_move_with_history_and_permissions(
    site: Site, tmp_path: Path, pair: tuple[str, str]
) -> None:
    source = site("a", pair[0], SOURCE_KEY)
    dest = site("b", pair[1], DEST_KEY if pair[1] == "postgres" else None)
    images = populate(source)
    bundle = tmp_path / "one.bundle"
    result = export_bundle(source, bundle, patterns=("acme/*", "alice/*"), quiet=True)
    assert not bundle.with_name("one.bundle.partial").exists()
    assert result.through == source.runner.position() and result.missing_blobs == ()

    imported = import_bundle(dest, bundle, quiet=True)
    assert imported.events == result.events and imported.blobs == result.blobs

    assert _registry_rows(dest) == _registry_rows(source)
    assert dest.queries.catalog() == ["acme/app", "acme/web", "alice/tool"]  # not carol/home
    for key, image in images.items():
        if key == "carol/home":
            assert not dest.blobs.exists(image.digest)
            continue
        for digest in (image.digest, image.config, *image.layers):
            assert _blob(dest, digest) == _blob(source, digest)
    # Identities arrived: the imported users log in with their own passwords here.
    bob = dest.authenticator.basic("bob", "bob-pw-123", "127.0.0.1")
    assert bob.principal == Principal(PrincipalKind.USER, "bob") and not bob.superuser
    assert verify(dest, quiet=True).differences == ()


def test_a_second_export_since_carries_only_what_is_new(site: Site, tmp_path: Path) -> None:
    source, dest = site("a", key=SOURCE_KEY), site("b")
    populate(source)
    first = export_bundle(source, tmp_path / "1.bundle", patterns=("acme/*", "alice/*"), quiet=True)
    import_bundle(dest, tmp_path / "1.bundle", quiet=True)

    # New: a push to acme/app, a new repository, and a user granted since.
    new = push_image(source, "acme/app", "v2", seed="new", caller=ALICE)
    push_image(source, "acme/fresh", "latest", seed="fresh", caller=ALICE)
    source.identity.create_user(AccountName("dave"), "d@example.com", "dave-pw-123", SYSTEM)
    source.registry.grant(
        RepositoryName("acme/web"),
        Principal(PrincipalKind.USER, "dave"),
        RepositoryRole.WRITE,
        ALICE,
    )
    second = export_bundle(
        source,
        tmp_path / "2.bundle",
        since=first.through,
        patterns=("acme/*", "alice/*"),
        quiet=True,
    )
    frames = _frames(tmp_path / "2.bundle")
    events = [f for f in frames if isinstance(f, EventFrame)]
    blobs = {f.digest for f in frames if isinstance(f, BlobStart)}
    # Every event is new, except dave's stream, which was needed only since: it is whole.
    dave = {f.originator_id for f in events if f.position <= first.through}
    assert len(dave) <= 2  # his account and his namespace claim
    assert all(f.position > first.through for f in events if f.originator_id not in dave)
    assert str(new.digest) in blobs and str(new.config) in blobs
    assert blobs.isdisjoint(str(d) for d in _blob_digests(source, first.through))

    imported = import_bundle(dest, tmp_path / "2.bundle", quiet=True)
    assert imported.events == second.events and imported.events_present == 0
    assert _blob(dest, new.digest) == _blob(source, new.digest)
    assert dest.queries.resolve_tag(RepositoryName("acme/app"), Tag("v2")) == new.digest
    assert "acme/fresh" in dest.queries.catalog()
    assert ("user", "dave", "write") in dest.queries.permissions(RepositoryName("acme/web"))
    assert verify(dest, quiet=True).differences == ()


def _blob_digests(c: Container, through: int) -> set[Digest]:
    with c.views_db.transaction(write=False) as cur:
        rows = cur.execute(
            "SELECT digest FROM blob_links WHERE position <= ?", (through,)
        ).fetchall()
    return {Digest.parse(r[0]) for r in rows}


def test_import_is_idempotent_and_resumes_after_a_kill(site: Site, tmp_path: Path) -> None:
    source, dest = site("a", key=SOURCE_KEY), site("b")
    populate(source)
    bundle = tmp_path / "b.bundle"
    exported = export_bundle(source, bundle, quiet=True)

    class Killed(Exception):
        pass

    def kill_after_two(written: int) -> None:
        if written >= 10:
            raise Killed

    with pytest.raises(Killed):
        import_bundle(dest, bundle, quiet=True, batch_size=5, after_batch=kill_after_two)
    half = dest.log.recorder.max_notification_id()
    assert half == 10  # two whole batches, nothing of the third

    resumed = import_bundle(dest, bundle, quiet=True, batch_size=5)
    assert resumed.events == exported.events - 10 and resumed.events_present == 10
    assert resumed.blobs == 0 and resumed.blobs_present == exported.blobs

    again = import_bundle(dest, bundle, quiet=True)
    assert again.events == 0 and again.events_present == exported.events
    assert dest.log.recorder.max_notification_id() == exported.events
    assert verify(dest, quiet=True).differences == ()
    assert sorted(dest.queries.catalog()) == sorted(source.queries.catalog())


def _corrupt(path: Path, at: int) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    out = path.with_name("bad.bundle")
    out.write_bytes(bytes(data))
    return out


def test_damaged_bundles_are_refused_before_anything_is_written(site: Site, tmp_path: Path) -> None:
    source, dest = site("a"), site("b")
    populate(source)
    bundle = tmp_path / "b.bundle"
    export_bundle(source, bundle, quiet=True)
    size = bundle.stat().st_size
    truncated = tmp_path / "cut.bundle"
    truncated.write_bytes(bundle.read_bytes()[: size // 2])
    not_a_bundle = tmp_path / "x.bundle"
    not_a_bundle.write_bytes(b"hello, world\n")
    cases = {
        truncated: "truncated",
        _corrupt(bundle, size - 200): "",  # inside the last event: only the checksum knows
        not_a_bundle: "not a",
    }
    for path, says in cases.items():
        with pytest.raises(BundleError) as caught:
            import_bundle(dest, path, quiet=True)
        assert says in str(caught.value)
        assert dest.log.recorder.max_notification_id() in (None, 0)
    assert not any(dest.blobs.exists(d) for d in _blob_digests(source, 10**9))


def test_a_blob_that_does_not_match_its_digest_is_refused(site: Site, tmp_path: Path) -> None:
    source, dest = site("a"), site("b")
    image = push_image(source, "alice/x", "latest", seed="m", caller=SYSTEM)
    bundle = tmp_path / "b.bundle"
    export_bundle(source, bundle, quiet=True)
    data = bundle.read_bytes()
    layer = _blob(source, image.layers[0])
    at = data.index(layer) + 3
    # A consistent forgery: the content changed and the checksum recomputed, so only the
    # blob's own digest can tell.
    forged = _rewrite_trailer(bytearray(data), at, tmp_path / "forged.bundle")
    with pytest.raises(BundleError, match=f"blob {image.layers[0]} .*does not match"):
        import_bundle(dest, forged, quiet=True)
    assert not dest.blobs.exists(image.layers[0])
    assert dest.log.recorder.max_notification_id() in (None, 0)


def _rewrite_trailer(data: bytearray, at: int, out: Path) -> Path:
    import hashlib

    import msgpack

    data[at] ^= 0x01
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(bytes(data))
    start = 0
    trailer: Any = None
    for obj in unpacker:
        if isinstance(obj, list) and obj and obj[0] == "end":
            trailer = obj
            break
        start = unpacker.tell()
    trailer[1]["sha256"] = hashlib.sha256(bytes(data[:start])).hexdigest()
    out.write_bytes(bytes(data[:start]) + msgpack.packb(trailer))
    return out


def test_a_name_taken_here_refuses_the_whole_bundle(site: Site, tmp_path: Path) -> None:
    source, dest = site("a"), site("b")
    populate(source)
    dest.identity.create_user(AccountName("bob"), "", "local-bob-pw", SYSTEM)  # not their bob
    bundle = tmp_path / "b.bundle"
    export_bundle(source, bundle, patterns=("acme/*",), quiet=True)
    before = dest.log.recorder.max_notification_id()
    with pytest.raises(ImportRefused) as refused:
        import_bundle(dest, bundle, quiet=True)
    assert any("user bob already exists" in p for p in refused.value.problems)
    assert dest.log.recorder.max_notification_id() == before
    assert dest.queries.catalog() == []


def test_a_bundle_from_this_same_site_is_refused(site: Site, tmp_path: Path) -> None:
    source = site("a")
    push_image(source, "alice/x", "latest", caller=SYSTEM)
    export_bundle(source, tmp_path / "b.bundle", quiet=True)
    with pytest.raises(ImportRefused, match="exported by this site"):
        import_bundle(source, tmp_path / "b.bundle", quiet=True)


def test_imported_names_are_read_only_here(site: Site, tmp_path: Path) -> None:
    source, dest = site("a"), site("b")
    populate(source)
    source.identity.set_superuser(AccountName("alice"), True, SYSTEM)
    _, token = source.identity.issue_api_token(AccountName("alice"), [ApiScope.SUPER_USER], ALICE)
    export_bundle(source, tmp_path / "b.bundle", patterns=("acme/*", "alice/*"), quiet=True)
    import_bundle(dest, tmp_path / "b.bundle", quiet=True)
    # Superuser is a power over one installation: it does not travel with the account.
    for c, superuser in ((source, True), (dest, False)):
        assert c.authenticator.basic("alice", "alice-pw-123", "127.0.0.1").superuser is superuser
        assert c.authenticator.bearer_api_token(token, "127.0.0.1").superuser is superuser
    app, new = RepositoryName("acme/app"), RepositoryName("acme/new")
    bob = Caller(Actor(ActorKind.USER, "bob"), "r")
    writes: list[Callable[[], Any]] = [
        lambda: push_image(dest, "acme/app", "x", seed="z", caller=bob),
        lambda: push_image(dest, "acme/new", "x", seed="z", caller=bob),  # in an imported org
        lambda: dest.registry.untag(app, Tag("latest"), bob),
        lambda: dest.registry.delete_repository(app, bob),
        lambda: dest.registry.create_repository(new, bob),
        lambda: dest.identity.upsert_team(
            AccountName("acme"), TeamName("xx"), TeamRole.MEMBER, bob
        ),
        lambda: dest.identity.create_robot(AccountName("acme"), RobotShortName("r2"), bob),
        lambda: dest.identity.change_password(AccountName("bob"), "another-pw-1", bob),
    ]
    for write in writes:
        with pytest.raises(ReplicatedReadOnly, match=f"replicated from site {source.site_id}"):
            write()
    for name in ("acme", "bob"):
        with pytest.raises(NameTaken):
            dest.identity.create_user(AccountName(name), "", "some-pw-123", SYSTEM)
    # Local names stay writable, and may name imported users in their grants.
    dest.identity.create_user(AccountName("erin"), "", "erin-pw-123", SYSTEM)
    push_image(dest, "erin/own", "latest", caller=Caller(Actor(ActorKind.USER, "erin"), "r"))
    dest.registry.grant(
        RepositoryName("erin/own"),
        Principal(PrincipalKind.USER, "bob"),
        RepositoryRole.READ,
        SYSTEM,
    )
    assert verify(dest, quiet=True).differences == ()


def test_blobs_larger_than_a_chunk_stream_through(site: Site, tmp_path: Path) -> None:
    source, dest = site("a"), site("b")
    big = bytes(range(256)) * (CHUNK // 256 * 2 + 3)  # two chunks and a bit
    digest, size = source.blobs.put(io.BytesIO(big))
    source.registry.link_blob(RepositoryName("alice/big"), digest, SYSTEM)
    exported = export_bundle(source, tmp_path / "b.bundle", quiet=True)
    assert exported.blob_bytes == size
    chunks = [f for f in _frames(tmp_path / "b.bundle") if isinstance(f, bytes)]
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, size - 2 * CHUNK]
    import_bundle(dest, tmp_path / "b.bundle", quiet=True)
    assert _blob(dest, digest) == big


def test_the_expiry_of_an_imported_tag_is_left_to_its_origin(site: Site, tmp_path: Path) -> None:
    now = [1_900_000_000_000]
    source, dest = site("a", wall_ms=lambda: now[0]), site("b", wall_ms=lambda: now[0])
    push_image(source, "alice/x", "latest", caller=SYSTEM)
    expires = datetime.fromtimestamp(now[0] / 1000 + 60, tz=UTC)
    source.registry.set_tag_expiration(RepositoryName("alice/x"), Tag("latest"), expires, SYSTEM)
    export_bundle(source, tmp_path / "b.bundle", quiet=True)
    import_bundle(dest, tmp_path / "b.bundle", quiet=True)
    now[0] += 120_000
    assert dest.queries.repositories_with_due_expirations() == ["alice/x"]
    assert dest.queries.repositories_with_due_expirations(site_id=str(dest.site_id)) == []
    before = dest.log.recorder.max_notification_id()
    dest.registry.expire_tags(RepositoryName("alice/x"), SYSTEM)  # quietly nothing
    assert dest.log.recorder.max_notification_id() == before
    assert dest.queries.resolve_tag(RepositoryName("alice/x"), Tag("latest")) is None  # hidden


def test_the_commands_print_one_line_and_exit_1_on_a_bad_bundle(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = site("a")
    push_image(source, "alice/x", "latest", caller=SYSTEM)
    source.close()
    data = str(tmp_path / "a")
    bundle = tmp_path / "b.bundle"
    assert cli.main(["export", "--quiet", "--data-dir", data, str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "next export: --since " in out
    (tmp_path / "cut.bundle").write_bytes(bundle.read_bytes()[:-10])
    other = str(tmp_path / "c")
    assert cli.main(["import", "--quiet", "--data-dir", other, str(tmp_path / "cut.bundle")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err and "Traceback" not in err
    assert cli.main(["import", "--quiet", "--data-dir", data, str(bundle)]) == 1
    assert "exported by this site" in capsys.readouterr().err
    assert cli.main(["import", "--data-dir", other, str(bundle)]) == 0
    captured = capsys.readouterr()
    assert "imported " in captured.out and "events" in captured.err  # progress on stderr


def test_a_new_repository_never_goes_into_a_namespace_of_this_site(
    site: Site, tmp_path: Path
) -> None:
    source, dest, third = site("a"), site("b"), site("c")
    populate(source)
    first = export_bundle(source, tmp_path / "1.bundle", patterns=("alice/*",), quiet=True)
    import_bundle(dest, tmp_path / "1.bundle", quiet=True)
    push_image(source, "acme/new", "latest", seed="n", caller=ALICE)
    export_bundle(
        source, tmp_path / "2.bundle", since=first.through, patterns=("acme/*",), quiet=True
    )
    # A site with an acme of its own refuses the repository acme/new.
    third.identity.create_user(AccountName("acme"), "", "acme-pw-123", SYSTEM)
    with pytest.raises(ImportRefused) as refused:
        import_bundle(third, tmp_path / "2.bundle", quiet=True)
    assert any("this site's own" in p for p in refused.value.problems), refused.value.problems
    # Where acme is nobody's (the bundle holds no acme: it did not change), it goes in,
    # and the name acme is taken from then on.
    import_bundle(dest, tmp_path / "2.bundle", quiet=True)
    assert "acme/new" in dest.queries.catalog()
    with pytest.raises(NameTaken):
        dest.identity.create_user(AccountName("acme"), "", "acme-pw-123", SYSTEM)
    with pytest.raises(ReplicatedReadOnly):
        push_image(dest, "acme/other", "latest", caller=SYSTEM)


def _forged(c: Container, path: Path, *aggregates: Any) -> Path:
    """A well-formed bundle from a made-up site holding the pending events of
    ``aggregates`` (never saved here), as a forger with this site's ids would write it."""
    mapper = c.log.mapper
    with BundleWriter(path) as w:
        w.header(Header(str(uuid.uuid4()), 0, 1, "2026-01-01T00:00:00+00:00", ()))
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                stored = mapper.to_stored_event(event)
                w.event(
                    EventFrame(
                        1,
                        str(stored.originator_id),
                        stored.originator_version,
                        stored.topic,
                        stored.state,  # plain: this site has no cipher
                    )
                )
        w.finish()
    return path


def test_a_bundle_never_changes_or_makes_this_sites_own_streams(site: Site, tmp_path: Path) -> None:
    dest = site("b")
    dest.identity.create_user(AccountName("victim"), "", "victim-pw-123", SYSTEM)
    ctx = EventContext(Actor.system(), dest.site_id, HybridLogicalClock().now(), "forged")
    victim = dest.log.repository.get(Account.create_id(dest.site_id, AccountName("victim")))
    victim.change_password(Argon2PasswordHasher.cheap().hash("taken-over"), ctx)
    evil = Account.create(AccountName("evil"), "", "x", ctx, superuser=True)
    before = dest.log.recorder.max_notification_id()
    for aggregate in (victim, evil):
        with pytest.raises(ImportRefused) as refused:
            import_bundle(dest, _forged(dest, tmp_path / "f.bundle", aggregate), quiet=True)
        assert "is this site's own" in refused.value.problems[0]
    # A stream whose id is not that of its name at the site its Created names.
    elsewhere = EventContext(Actor.system(), uuid.uuid4(), ctx.hlc, "forged")
    liar = Account.create(AccountName("liar"), "", "x", elsewhere)
    liar._id = Account.create_id(dest.site_id, AccountName("liar"))  # type: ignore[attr-defined]
    for event in liar.pending_events:
        object.__setattr__(event, "originator_id", liar._id)  # type: ignore[attr-defined]
    with pytest.raises(BundleError, match="is not the stream of"):
        import_bundle(dest, _forged(dest, tmp_path / "g.bundle", liar), quiet=True)
    assert dest.log.recorder.max_notification_id() == before


def test_an_import_killed_with_sigkill_resumes_to_the_same_registry(
    site: Site, tmp_path: Path
) -> None:
    """A real ``kill -9`` of ``cargohold import`` while it stores blobs (each one fsynced:
    the longest phase), then the same command again: it completes, and the registry is
    the one an uninterrupted import makes."""
    source = site("a")
    for i in range(60):
        push_image(source, f"alice/r{i % 3}", f"t{i}", seed=f"k{i}", caller=SYSTEM)
    source.close()
    bundle = tmp_path / "k.bundle"
    data_a, data_b = str(tmp_path / "a"), str(tmp_path / "b")
    assert cli.main(["export", "--quiet", "--data-dir", data_a, str(bundle)]) == 0
    command = [sys.executable, "-m", "cargohold.cli", "import", "--quiet", "--data-dir", data_b]
    proc = subprocess.Popen([*command, str(bundle)], stdout=subprocess.DEVNULL)
    stored = tmp_path / "b" / "blobs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if stored.exists() and sum(1 for p in stored.rglob("*") if p.is_file()) >= 20:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the import ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    again = subprocess.run([*command, str(bundle)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    dest = site("b")
    reference = site("c")
    import_bundle(reference, bundle, quiet=True)
    assert _registry_rows(dest) == _registry_rows(reference)
    assert verify(dest, quiet=True).differences == ()
    assert sorted(dest.queries.catalog()) == ["alice/r0", "alice/r1", "alice/r2"]
