"""The merge rules the registry's commands decide on (``domain/repository_merge.py``):
two sites' streams of one name, written before either heard of the other, folded into
one state whatever order they are given in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from cargohold.domain.context import EventContext
from cargohold.domain.identity import Principal, PrincipalKind, RepositoryRole
from cargohold.domain.repository import Repository
from cargohold.domain.repository_merge import adopt, fold
from cargohold.domain.values import Actor, ActorKind, Digest, HLCTimestamp, RepositoryName, Tag

NAME = RepositoryName("acme/app")
A = UUID("00000000-0000-0000-0000-00000000000a")
B = UUID("00000000-0000-0000-0000-00000000000b")
LATEST = Tag("latest")
BOB = Principal(PrincipalKind.USER, "bob")


class Writer:
    """One site's stream of ``NAME``; each command at the wall millisecond given."""

    def __init__(self, site: UUID) -> None:
        self.site = site
        self.repo: Repository | None = None
        self.events: list[Any] = []

    def ctx(self, ms: int) -> EventContext:
        return EventContext(Actor(ActorKind.USER, "alice"), self.site, HLCTimestamp(ms), "r")

    def write(self, ms: int, act: Any) -> None:
        ctx = self.ctx(ms)
        if self.repo is None:
            self.repo = Repository.create(NAME, ctx)
        act(self.repo, ctx)
        self.events.extend(self.repo.collect_events())


def manifest_of(repo: Repository, n: int, ctx: EventContext) -> Digest:
    """Link a blob and record an (image-less) manifest ``n`` the way the fold sees it."""
    digest = Digest.of(f"manifest {n}".encode())
    repo.link_blob(Digest.of(f"blob {n}".encode()), 10 + n, ctx)
    repo._trigger(  # the event alone: its guards are not what is under test here
        Repository.ManifestPushed,
        ctx,
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=100,
        config=None,
        layers=(),
        manifests=(),
        subject=None,
        artifact_type=None,
        annotations=None,
    )
    return digest


def push(n: int) -> Any:
    def act(repo: Repository, ctx: EventContext) -> None:
        repo.tag(LATEST, manifest_of(repo, n, ctx), ctx)

    return act


def folds(*writers: Writer) -> list[Any]:
    """The merged state of every order the streams can be given in: all the same."""
    streams = [w.events for w in writers]
    results = []
    for order in itertools.permutations(streams):
        merged = fold(NAME, [e for stream in order for e in reversed(stream)])
        repo = merged.repository
        assert repo is not None
        results.append((repo.deleted, dict(repo.tags), set(repo.manifests), dict(repo.blobs)))
    assert all(r == results[0] for r in results)
    return list(results[0])


def test_the_later_tag_move_wins_whichever_site_wrote_it() -> None:
    a, b = Writer(A), Writer(B)
    a.write(1000, push(1))
    b.write(2000, push(2))
    deleted, tags, manifests, _ = folds(a, b)
    assert not deleted
    assert tags == {LATEST: Digest.of(b"manifest 2")}
    assert manifests == {Digest.of(b"manifest 1"), Digest.of(b"manifest 2")}


def test_a_later_untag_at_one_site_wins_over_an_earlier_move_at_the_other() -> None:
    a, b = Writer(A), Writer(B)
    b.write(1000, push(2))
    a.write(1500, push(1))
    b.write(2000, lambda repo, ctx: repo.untag(LATEST, ctx))
    assert folds(a, b)[1] == {}


def test_content_written_after_a_deletion_it_had_not_seen_brings_the_name_back() -> None:
    a, b = Writer(A), Writer(B)
    a.write(1000, push(1))
    b.write(1100, push(2))
    a.write(2000, lambda repo, ctx: repo.delete(ctx))
    b.write(3000, push(3))  # B had not heard of the deletion
    deleted, tags, manifests, blobs = folds(a, b)
    assert not deleted
    assert tags == {LATEST: Digest.of(b"manifest 3")}
    assert manifests == {Digest.of(b"manifest 3")}
    assert blobs == {Digest.of(b"blob 3"): 13}


def test_a_removal_after_a_deletion_it_had_not_seen_changes_nothing() -> None:
    a, b = Writer(A), Writer(B)
    a.write(1000, push(1))
    b.write(1100, lambda repo, ctx: repo.grant(BOB, RepositoryRole.READ, ctx))
    a.write(2000, lambda repo, ctx: repo.delete(ctx))
    b.write(3000, lambda repo, ctx: repo.revoke(BOB, ctx))
    merged = fold(NAME, a.events + b.events)
    assert merged.repository is not None and merged.repository.deleted
    assert not merged.live


def test_an_expiry_of_a_tag_moved_meanwhile_at_the_other_site_keeps_the_move() -> None:
    a, b = Writer(A), Writer(B)
    soon = datetime.fromtimestamp(1.5, tz=UTC)
    a.write(1000, push(1))
    b.write(1001, push(2))
    a.write(1002, lambda repo, ctx: repo.set_tag_expiration(LATEST, soon, ctx))
    b.write(1600, push(3))
    a.write(1700, lambda repo, ctx: repo.expire_due(ctx))  # A saw only its own move
    assert folds(a, b)[1] == {LATEST: Digest.of(b"manifest 3")}


def test_adopting_keeps_the_aggregate_its_own_stream_and_the_latest_stamp() -> None:
    a, b = Writer(A), Writer(B)
    a.write(1000, push(1))
    b.write(5000, push(2))
    merged = fold(NAME, a.events + b.events)
    assert a.repo is not None
    version = a.repo.version
    adopt(a.repo, merged)
    assert a.repo.id == Repository.create_id(A, NAME) and a.repo.version == version
    assert a.repo.tags == {LATEST: Digest.of(b"manifest 2")}
    assert a.repo.last_hlc == HLCTimestamp(5000)  # type: ignore[attr-defined]


def test_an_event_before_any_created_is_refused() -> None:
    a = Writer(A)
    a.write(1000, push(1))
    with pytest.raises(ValueError, match="before any Created"):
        fold(NAME, a.events[1:])
