"""The tag time machine on the Repository aggregate, given/when/then; and the durations
and the ``quay.expires-after`` label of domain/expiration.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from cargohold.commands.tag_windows import TagWindows
from cargohold.domain.accounts import Account, Organization
from cargohold.domain.context import EventContext
from cargohold.domain.errors import (
    InvalidInput,
    ManifestBlobUnknown,
    ManifestUnknown,
    TagUnknown,
)
from cargohold.domain.expiration import label_expiration, parse_duration
from cargohold.domain.identity import AccountName
from cargohold.domain.manifest import OCI_MANIFEST, ParsedManifest
from cargohold.domain.repository import Repository
from cargohold.domain.values import (
    Actor,
    ActorKind,
    Descriptor,
    Digest,
    HLCTimestamp,
    MediaType,
    RepositoryName,
    Tag,
)

SITE = UUID("5c1a7e00-0000-4000-8000-000000000002")
ALICE = Actor(ActorKind.USER, "alice")
DAY_MS = 86_400_000
T0 = 1_700_000_000_000  # a wall-clock millisecond
WEEKS2 = timedelta(weeks=2)
CONFIG_TYPE = MediaType("application/vnd.oci.image.config.v1+json")
LAYER_TYPE = MediaType("application/vnd.oci.image.layer.v1.tar")
LATEST = Tag("latest")


def at(ms: int, actor: Actor = ALICE) -> EventContext:
    return EventContext(actor, SITE, HLCTimestamp(ms, 0), f"req-{ms}")


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def image(seed: str) -> ParsedManifest:
    config = Descriptor(CONFIG_TYPE, Digest.of(f"config {seed}".encode()), 10)
    layer = Descriptor(LAYER_TYPE, Digest.of(f"layer {seed}".encode()), 100)
    return ParsedManifest(
        digest=Digest.of(f"manifest {seed}".encode()),
        media_type=OCI_MANIFEST,
        size=300,
        config=config,
        layers=(layer,),
        manifests=(),
        subject=None,
        artifact_type=None,
        annotations=None,
    )


def given_repository(*seeds: str) -> tuple[Repository, list[ParsedManifest]]:
    repo = Repository.create(RepositoryName("acme/web"), at(T0))
    manifests = [image(s) for s in seeds]
    for m in manifests:
        assert m.config is not None
        repo.link_blob(m.config.digest, m.config.size, at(T0))
        for layer in m.layers:
            repo.link_blob(layer.digest, layer.size, at(T0))
        repo.push_manifest(m, at(T0))
    repo.collect_events()
    return repo, manifests


def new_events(repo: Repository) -> list[object]:
    return list(repo.collect_events())


# -- restore -----------------------------------------------------------------------------


def test_a_moved_tag_is_restored_to_its_previous_manifest_within_the_window() -> None:
    repo, (a, b) = given_repository("a", "b")
    repo.tag(LATEST, a.digest, at(T0))
    repo.tag(LATEST, b.digest, at(T0 + 1000))
    new_events(repo)

    repo.restore_tag(LATEST, a.digest, WEEKS2, at(T0 + 13 * DAY_MS))

    (event,) = new_events(repo)
    assert isinstance(event, Repository.TagRestored)
    assert (event.tag, event.from_digest, event.to_digest) == (LATEST, b.digest, a.digest)
    assert repo.tags[LATEST] == a.digest


def test_a_deleted_tag_is_restored_and_then_restoring_again_changes_nothing() -> None:
    repo, (a,) = given_repository("a")
    repo.tag(LATEST, a.digest, at(T0))
    repo.untag(LATEST, at(T0 + 1000))
    repo.restore_tag(LATEST, a.digest, WEEKS2, at(T0 + 2000))
    new_events(repo)

    repo.restore_tag(LATEST, a.digest, WEEKS2, at(T0 + 3000))

    assert new_events(repo) == []
    assert repo.tags[LATEST] == a.digest


def test_restore_past_the_window_is_refused() -> None:
    repo, (a,) = given_repository("a")
    repo.tag(LATEST, a.digest, at(T0))
    repo.untag(LATEST, at(T0 + 1000))

    with pytest.raises(ManifestUnknown, match="time machine window"):
        repo.restore_tag(LATEST, a.digest, WEEKS2, at(T0 + 1000 + 14 * DAY_MS + 1))
    with pytest.raises(ManifestUnknown):
        repo.restore_tag(LATEST, a.digest, timedelta(0), at(T0 + 1001))
    assert LATEST not in repo.tags


def test_restore_to_a_manifest_the_tag_never_pointed_at_is_refused() -> None:
    repo, (a, b) = given_repository("a", "b")
    repo.tag(LATEST, a.digest, at(T0))
    repo.tag(Tag("other"), b.digest, at(T0))

    with pytest.raises(ManifestUnknown):
        repo.restore_tag(LATEST, b.digest, WEEKS2, at(T0 + 1000))


def test_restore_to_a_deleted_manifest_pushes_it_again_from_its_content() -> None:
    repo, (a,) = given_repository("a")
    repo.tag(LATEST, a.digest, at(T0))
    repo.delete_manifest(a.digest, at(T0 + 1000))
    new_events(repo)

    with pytest.raises(ManifestUnknown, match="content is gone"):
        repo.restore_tag(LATEST, a.digest, WEEKS2, at(T0 + 2000))
    repo.restore_tag(LATEST, a.digest, WEEKS2, at(T0 + 2000), manifest=a)

    events = new_events(repo)
    assert [type(e) for e in events] == [Repository.ManifestPushed, Repository.TagRestored]
    assert repo.tags[LATEST] == a.digest and a.digest in repo.manifests


def test_restore_to_a_deleted_manifest_whose_blobs_are_gone_is_refused() -> None:
    repo, (a,) = given_repository("a")
    repo.tag(LATEST, a.digest, at(T0))
    repo.delete_manifest(a.digest, at(T0 + 1000))
    assert a.config is not None
    repo.unlink_blob(a.config.digest, at(T0 + 1000))

    with pytest.raises(ManifestBlobUnknown):
        repo.restore_tag(LATEST, a.digest, WEEKS2, at(T0 + 2000), manifest=a)


# -- expiration and expiry ---------------------------------------------------------------


def test_an_expiration_is_set_changed_and_cleared() -> None:
    repo, (a,) = given_repository("a")
    repo.tag(LATEST, a.digest, at(T0))
    new_events(repo)

    repo.set_tag_expiration(LATEST, moment(T0 + DAY_MS), at(T0 + 1))
    repo.set_tag_expiration(LATEST, moment(T0 + DAY_MS), at(T0 + 2))  # idempotent
    repo.set_tag_expiration(LATEST, None, at(T0 + 3))

    events = new_events(repo)
    assert [(type(e), e.expires_at, e.from_expires_at) for e in events] == [  # type: ignore[attr-defined]
        (Repository.TagExpirationChanged, moment(T0 + DAY_MS), None),
        (Repository.TagExpirationChanged, None, moment(T0 + DAY_MS)),
    ]
    assert repo.tag_expirations == {}


def test_an_expiration_must_be_in_the_future_and_on_a_live_tag() -> None:
    repo, (a,) = given_repository("a")
    repo.tag(LATEST, a.digest, at(T0))
    with pytest.raises(InvalidInput):
        repo.set_tag_expiration(LATEST, moment(T0), at(T0))
    with pytest.raises(InvalidInput):
        repo.set_tag_expiration(LATEST, datetime(2100, 1, 1), at(T0))  # naive
    with pytest.raises(TagUnknown):
        repo.set_tag_expiration(Tag("nope"), moment(T0 + DAY_MS), at(T0))


def test_a_due_expiration_is_recorded_by_the_system_dated_at_the_expiration() -> None:
    repo, (a,) = given_repository("a")
    repo.tag(LATEST, a.digest, at(T0))
    repo.set_tag_expiration(LATEST, moment(T0 + DAY_MS), at(T0))
    new_events(repo)

    repo.expire_due(at(T0 + DAY_MS - 1))
    assert new_events(repo) == []
    repo.expire_due(at(T0 + 3 * DAY_MS, Actor.system()))

    (event,) = new_events(repo)
    assert isinstance(event, Repository.TagExpired)
    assert (event.tag, event.digest, event.expires_at) == (LATEST, a.digest, moment(T0 + DAY_MS))
    assert event.actor == Actor.system()
    assert LATEST not in repo.tags
    # Restorable for the window counted from the expiry, not from when it was recorded.
    assert repo.restorable(LATEST, a.digest, WEEKS2, at(T0 + DAY_MS + 14 * DAY_MS))
    assert not repo.restorable(LATEST, a.digest, WEEKS2, at(T0 + DAY_MS + 14 * DAY_MS + 1))


def test_a_users_command_on_an_expired_tag_first_records_the_expiry_as_the_system() -> None:
    repo, (a, b) = given_repository("a", "b")
    repo.tag(LATEST, a.digest, at(T0))
    repo.set_tag_expiration(LATEST, moment(T0 + DAY_MS), at(T0))
    new_events(repo)

    with pytest.raises(TagUnknown):
        repo.untag(LATEST, at(T0 + 2 * DAY_MS))
    repo.tag(LATEST, b.digest, at(T0 + 2 * DAY_MS))

    expired, moved = new_events(repo)
    assert isinstance(expired, Repository.TagExpired) and expired.actor == Actor.system()
    assert isinstance(moved, Repository.TagMoved) and moved.actor == ALICE
    assert moved.from_digest is None and repo.tag_expirations == {}


def test_moving_a_tag_clears_its_expiration() -> None:
    repo, (a, b) = given_repository("a", "b")
    repo.tag(LATEST, a.digest, at(T0))
    repo.set_tag_expiration(LATEST, moment(T0 + DAY_MS), at(T0))
    repo.tag(LATEST, b.digest, at(T0 + 1))
    assert repo.tag_expirations == {}
    repo.expire_due(at(T0 + 2 * DAY_MS))
    assert repo.tags[LATEST] == b.digest


def test_replaying_the_events_gives_the_same_time_machine_state() -> None:
    repo = Repository.create(RepositoryName("acme/web"), at(T0))
    a, b = image("a"), image("b")
    for m in (a, b):
        assert m.config is not None
        for blob in (m.config, *m.layers):
            repo.link_blob(blob.digest, blob.size, at(T0))
        repo.push_manifest(m, at(T0))
    repo.tag(LATEST, a.digest, at(T0))
    repo.tag(LATEST, b.digest, at(T0 + 1))
    repo.set_tag_expiration(LATEST, moment(T0 + DAY_MS), at(T0 + 2))
    repo.tag(Tag("old"), a.digest, at(T0 + 3))
    repo.set_tag_expiration(Tag("old"), moment(T0 + 10), at(T0 + 4))
    repo.expire_due(at(T0 + 20))
    events = list(repo.collect_events())

    replayed: Repository | None = None
    for event in events:
        replayed = event.mutate(replayed)  # type: ignore[arg-type]
    assert replayed is not None
    assert (
        replayed.tag_pasts
        == repo.tag_pasts
        == {
            LATEST: {a.digest: T0 + 1},
            Tag("old"): {a.digest: T0 + 10},
        }
    )
    assert replayed.tag_expirations == repo.tag_expirations == {LATEST: moment(T0 + DAY_MS)}
    assert replayed.tags == repo.tags == {LATEST: b.digest}


def test_a_snapshot_from_before_the_time_machine_is_upcast_empty() -> None:
    state: dict[str, object] = {}
    Repository.upcast_v3_v4(state)
    assert state == {"tag_expirations": {}, "tag_pasts": {}}


# -- namespace windows -------------------------------------------------------------------


def test_the_window_is_set_on_users_and_organisations_idempotently() -> None:
    user = Account.create(AccountName("alice"), "", "hash", at(T0))
    org = Organization.create(AccountName("acme"), AccountName("alice"), at(T0))
    for aggregate in (user, org):
        aggregate.collect_events()
        aggregate.set_tag_expiration_window(86400, at(T0))
        aggregate.set_tag_expiration_window(86400, at(T0))
        (event,) = aggregate.collect_events()
        assert (event.seconds, event.from_seconds) == (86400, None)  # type: ignore[attr-defined]
        assert aggregate.tag_expiration_s == 86400
        with pytest.raises(InvalidInput):
            aggregate.set_tag_expiration_window(-1, at(T0))


def test_tag_windows_default_and_options() -> None:
    own = {"acme": 0}
    windows = TagWindows(own.get)
    assert windows.seconds("acme") == 0
    assert windows.window("other") == WEEKS2
    assert windows.check(604800) == 604800
    for bad in (5, -1, "1w", True, None):
        with pytest.raises(InvalidInput):
            windows.check(bad)


# -- durations and the label -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2w", timedelta(weeks=2)),
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("1d", timedelta(days=1)),
        ("0s", timedelta(0)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "w", "2y", "-1d", "1.5h", "2 w", "9999999999w"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def _config(labels: object) -> bytes:
    return json.dumps({"architecture": "amd64", "config": {"Labels": labels}}).encode()


def test_the_expires_after_label_is_read_from_an_image_config() -> None:
    assert label_expiration(_config({"quay.expires-after": "2w"})) == timedelta(weeks=2)
    for bad in (
        _config({"quay.expires-after": "soon"}),
        _config({"quay.expires-after": "0s"}),
        _config({"quay.expires-after": 5}),
        _config({"other": "1d"}),
        _config(None),
        json.dumps({"config": []}).encode(),
        b"[1, 2]",
        b"\xff not json",
    ):
        assert label_expiration(bad) is None
