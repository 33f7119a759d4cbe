"""The msgpack transcoder: every event class and snapshots round-trip to EQUAL objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import msgpack
import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import Mapper, StoredEvent, TranscodingNotRegisteredError
from hypothesis import given, settings
from hypothesis import strategies as st

from cargohold.adapters.transcoder import MsgpackTranscoder
from cargohold.domain.accounts import Organization
from cargohold.domain.context import EventContext
from cargohold.domain.identity import (
    AccountName,
    NamespaceKind,
    Principal,
    PrincipalKind,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
    Visibility,
)
from cargohold.domain.repository import Repository
from cargohold.domain.values import (
    Actor,
    ActorKind,
    Descriptor,
    Digest,
    DigestAlgorithm,
    HLCTimestamp,
    MediaType,
    RepositoryName,
    Tag,
)
from tests import strategies as s

EVENT_CLASSES = s.all_event_classes()
mapper: Mapper[UUID] = Mapper(transcoder=MsgpackTranscoder())
transcoder = MsgpackTranscoder()


def roundtrip(obj: Any) -> Any:
    return transcoder.decode(transcoder.encode(obj))


def test_discovers_every_event_class() -> None:
    names = {c.__name__ for c in EVENT_CLASSES}
    assert {
        "Created",
        "BlobLinked",
        "BlobUnlinked",
        "ManifestPushed",
        "TagMoved",
        "TagDeleted",
        "ManifestDeleted",
        "PermissionGranted",
        "PermissionRevoked",
        "VisibilityChanged",
    } <= names
    qualnames = {c.__qualname__ for c in EVENT_CLASSES}
    assert {
        "Account.Created",
        "Account.PasswordChanged",
        "Account.SuperuserGranted",
        "Account.SuperuserRevoked",
        "Organization.Created",
        "Organization.MemberAdded",
        "Organization.MemberRemoved",
        "Organization.TeamCreated",
        "Organization.TeamRoleChanged",
        "Organization.TeamDeleted",
        "Organization.TeamMemberAdded",
        "Organization.TeamMemberRemoved",
        "Organization.RobotCreated",
        "Organization.RobotTokenRegenerated",
        "Organization.RobotDeleted",
        "Organization.DefaultPermissionSet",
        "Organization.DefaultPermissionRemoved",
        "NamespaceClaim.Created",
    } <= qualnames


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda c: c.__qualname__)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_every_event_class_round_trips_through_the_mapper(
    event_class: type[Repository.Event], data: st.DataObject
) -> None:
    event = data.draw(s.events_of(event_class))
    stored = mapper.to_stored_event(event)
    assert isinstance(stored.state, bytes)
    restored = mapper.to_domain_event(stored)
    assert type(restored) is event_class
    assert restored == event
    # And through bytes as a store would hand them back.
    copied = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=bytes(bytearray(stored.state)),
    )
    assert mapper.to_domain_event(copied) == event


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda c: c.__qualname__)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_events_stored_before_client_addresses_read_as_none(
    event_class: type[Repository.Event], data: st.DataObject
) -> None:
    """Class version 1 of every event had no ``client_address`` and no version key."""
    event = data.draw(s.events_of(event_class))
    stored = mapper.to_stored_event(event)
    state = mapper.transcoder.decode(stored.state)
    assert state.pop("class_version") == 2
    del state["client_address"]
    v1 = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=mapper.transcoder.encode(state),
    )
    restored = mapper.to_domain_event(v1)
    assert type(restored) is event_class
    assert restored.client_address is None
    assert restored.request_id == event.request_id and restored.actor == event.actor


@settings(max_examples=30, deadline=None)
@given(repo=s.repositories())
def test_snapshot_round_trips(repo: Repository) -> None:
    repo.collect_events()  # as Application.save() does before snapshotting
    snapshot = Repository.Snapshot.take(repo)
    restored = mapper.to_domain_event(mapper.to_stored_event(snapshot))
    assert restored == snapshot
    again = restored.mutate(None)
    assert isinstance(again, Repository)
    assert again == repo
    assert again.blobs == repo.blobs and again.tags == repo.tags
    assert again.permissions == repo.permissions and again.visibility is repo.visibility


def test_snapshot_from_before_access_control_upcasts_to_private_without_grants() -> None:
    ctx = EventContext(Actor.system(), uuid4(), HLCTimestamp(1, 0), "req-1")
    repo = Repository.create(RepositoryName("acme/web"), ctx)
    repo.link_blob(Digest.of(b"x"), 1, ctx)
    repo.collect_events()
    snapshot = Repository.Snapshot.take(repo)
    v1_state = {
        k: v
        for k, v in snapshot.state.items()
        if k not in {"permissions", "visibility", "deleted", "class_version"}
    }
    v1 = Repository.Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=v1_state,
    )
    restored = mapper.to_domain_event(mapper.to_stored_event(v1)).mutate(None)
    assert isinstance(restored, Repository)
    assert restored.permissions == {} and restored.visibility is Visibility.PRIVATE
    assert restored.deleted is False
    assert restored.blobs == repo.blobs


def test_organization_snapshot_round_trips() -> None:
    ctx = EventContext(Actor.system(), uuid4(), HLCTimestamp(1, 0), "req-1")
    org = Organization.create(AccountName("acme"), AccountName("alice"), ctx)
    org.create_team(TeamName("devs"), TeamRole.CREATOR, ctx, "developers")
    org.add_team_member(TeamName("devs"), AccountName("bob"), ctx)
    org.create_robot(RobotShortName("builder"), "hash", ctx)
    org.set_default_permission(Principal.robot("acme", "builder"), RepositoryRole.WRITE, ctx)
    org.collect_events()
    snapshot = Organization.Snapshot.take(org)
    restored = mapper.to_domain_event(mapper.to_stored_event(snapshot)).mutate(None)
    assert restored == org
    assert isinstance(restored, Organization)
    assert restored.team_members == org.team_members
    assert restored.default_permissions == org.default_permissions


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.text(),
            st.binary(),
            st.uuids(),
            s.aware_datetimes(),
            st.datetimes(),
            st.decimals(allow_nan=False),
            s.digests(),
            s.repository_names(),
            s.tags(),
            s.media_types(),
            s.descriptors(),
            s.actors(),
            s.hlc_timestamps(),
            st.sampled_from(ActorKind),
            st.sampled_from(DigestAlgorithm),
            s.account_names(),
            s.team_names(),
            s.robot_short_names(),
            s.principals(),
            st.sampled_from(PrincipalKind),
            st.sampled_from(RepositoryRole),
            st.sampled_from(TeamRole),
            st.sampled_from(Visibility),
            st.sampled_from(NamespaceKind),
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(
                st.text() | s.digests() | s.tags() | st.integers() | s.principals(),
                inner,
                max_size=3,
            ),
            st.frozensets(st.integers() | st.text(), max_size=3),
            st.sets(s.digests(), max_size=3),
        ),
        max_leaves=15,
    )
)
def test_values_round_trip_with_exact_types(value: Any) -> None:
    restored = roundtrip(value)
    assert restored == value
    assert _shape(restored) == _shape(value)


def _shape(value: Any) -> Any:
    """The value's types, recursively: equality alone would accept list for tuple."""
    if isinstance(value, (list, tuple)):
        return (type(value), [_shape(v) for v in value])
    if isinstance(value, dict):
        return (type(value), sorted((repr(k), type(k), _shape(v)) for k, v in value.items()))
    return type(value)


def test_str_subclasses_keep_their_type() -> None:
    for value in (
        RepositoryName("library/ubuntu"),
        Tag("latest"),
        MediaType("a/b"),
        AccountName("acme"),
        TeamName("owners"),
        RobotShortName("builder"),
    ):
        restored = roundtrip(value)
        assert type(restored) is type(value) and restored == value


def test_tuple_is_not_a_list() -> None:
    assert roundtrip((1, (2, 3), [4])) == (1, (2, 3), [4])
    assert type(roundtrip([1])) is list


def test_map_with_digest_keys() -> None:
    value = {Digest.of(b"a"): 1, Digest.of(b"b", DigestAlgorithm.SHA512): 2}
    assert roundtrip(value) == value


@pytest.mark.parametrize(
    "dt",
    [
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(seconds=1))),
        datetime(2020, 1, 1, 12, 0),
    ],
)
def test_datetimes_round_trip_exactly(dt: datetime) -> None:
    restored = roundtrip(dt)
    assert restored == dt
    assert restored.utcoffset() == dt.utcoffset()
    assert (restored.tzinfo is None) == (dt.tzinfo is None)
    assert restored.microsecond == dt.microsecond


def test_named_zone_decodes_as_its_fixed_offset() -> None:
    # NOTE: PEP 495 makes an ambiguous (fold=1) time never equal across zones, so the
    # instant and the offset are what survive, not equality with the ZoneInfo original.
    dt = datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York"))
    restored = roundtrip(dt)
    assert restored.timestamp() == dt.timestamp()
    assert restored.utcoffset() == dt.utcoffset() == timedelta(hours=-5)


def test_decimal_keeps_its_exponent() -> None:
    restored = roundtrip(Decimal("1.100"))
    assert str(restored) == "1.100"


def test_big_integers() -> None:
    for value in (2**64, -(2**63) - 1, 10**40, 2**64 - 1, -(2**63)):
        assert roundtrip(value) == value


def test_descriptor_with_everything() -> None:
    d = Descriptor(
        MediaType("application/vnd.oci.image.layer.v1.tar+gzip"),
        Digest.of(b"layer"),
        5,
        artifact_type=MediaType("application/x"),
        annotations={"a": "b"},
        platform={"os": "linux", "architecture": "amd64", "os.features": ["x"]},
        urls=("https://example.com/layer",),
    )
    assert roundtrip(d) == d


def test_unknown_type_raises_type_error_with_a_clear_message() -> None:
    class Unknown:
        pass

    with pytest.raises(TypeError, match=r"cannot encode .*Unknown.*ExtType"):
        transcoder.encode({"x": [Unknown()]})
    with pytest.raises(TranscodingNotRegisteredError):
        transcoder.encode(Unknown())


def test_subclass_of_a_supported_type_is_not_silently_degraded() -> None:
    class MyDict(dict[str, int]):
        pass

    with pytest.raises(TypeError):
        transcoder.encode(MyDict(a=1))


def test_unknown_ext_code_raises_on_decode() -> None:
    data = msgpack.packb(msgpack.ExtType(99, b""))
    with pytest.raises(ValueError, match="unknown ExtType code 99"):
        transcoder.decode(data)


def test_ext_codes_are_frozen() -> None:
    """Codes are in every stored event: this pins them (see the module docstring)."""
    cases: list[tuple[Any, int]] = [
        (UUID(int=0), 1),
        (datetime(2000, 1, 1, tzinfo=UTC), 2),
        (Decimal(1), 3),
        ((), 4),
        (Digest.of(b""), 5),
        (RepositoryName("a"), 6),
        (Tag("a"), 7),
        (MediaType("a/b"), 8),
        (Descriptor(MediaType("a/b"), Digest.of(b""), 0), 9),
        (Actor.system(), 10),
        (ActorKind.USER, 11),
        (HLCTimestamp(1, 2), 12),
        (DigestAlgorithm.SHA256, 13),
        (set(), 14),
        (frozenset(), 15),
        (2**64, 16),
        (AccountName("acme"), 17),
        (TeamName("owners"), 18),
        (RobotShortName("builder"), 19),
        (Principal.robot("acme", "builder"), 20),
        (PrincipalKind.TEAM, 21),
        (RepositoryRole.WRITE, 22),
        (TeamRole.CREATOR, 23),
        (Visibility.PUBLIC, 24),
        (NamespaceKind.ORGANIZATION, 25),
    ]
    for value, code in cases:
        ext = msgpack.unpackb(transcoder.encode(value))
        assert isinstance(ext, msgpack.ExtType) and ext.code == code, value
    assert transcoder.encode(Digest.of(b"")) == bytes.fromhex(
        "c72a05"  # ext8, 42 bytes, code 5
        "92a6736861323536c420"  # ["sha256", bin8 32 bytes ...
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_principal_payload_is_pinned() -> None:
    assert transcoder.encode(Principal.team("acme", "owners")) == bytes.fromhex(
        "c71214"  # ext8, 18 bytes, code 20
        "92a47465616dab61636d652f6f776e657273"  # ["team", "acme/owners"]
    )


def test_application_with_transcoder_topic_and_snapshots(tmp_path: Path) -> None:
    class Registry(Application[UUID]):
        is_snapshotting_enabled = True
        snapshotting_intervals = {Repository: 2}

    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "events.db"),
        "TRANSCODER_TOPIC": "cargohold.adapters.transcoder:MsgpackTranscoder",
    }
    app = Registry(env=env)
    assert isinstance(app.mapper.transcoder, MsgpackTranscoder)
    ctx = EventContext(Actor.system(), uuid4(), HLCTimestamp(1, 0), "req-1")
    repo = Repository.create(RepositoryName("library/ubuntu"), ctx)
    for i in range(5):
        repo.link_blob(Digest.of(bytes([i])), i, ctx)
    app.save(repo)
    assert app.snapshots is not None
    assert [snap.originator_version for snap in app.snapshots.get(repo.id)] == [2, 4, 6]
    app.close()

    reopened = Registry(env=env)
    loaded: Repository = reopened.repository.get(repo.id)
    assert loaded == repo
    assert [e.originator_version for e in reopened.events.get(repo.id)] == list(range(1, 7))
    reopened.close()


# PERF paths (issue 5): the fast digest codec writes and reads the same bytes as the
# generic form, and memoised values are equal to freshly decoded ones.


@given(s.digests())
def test_digest_payload_is_the_generic_msgpack_form(digest: Digest) -> None:
    t = MsgpackTranscoder()
    generic = msgpack.packb([digest.algorithm.value, bytes.fromhex(digest.hex)], use_bin_type=True)
    assert t.encode(digest) == msgpack.packb(msgpack.ExtType(5, generic), use_bin_type=True)
    decoded = t.decode(t.encode(digest))
    assert decoded == digest
    assert str(decoded) == str(digest)


def test_a_digest_in_another_msgpack_form_still_decodes() -> None:
    # str8 instead of fixstr for the algorithm: valid msgpack our encoder never wrote.
    raw = bytes(range(32))
    payload = b"\x92\xd9\x06sha256\xc4\x20" + raw
    decoded = MsgpackTranscoder().decode(msgpack.packb(msgpack.ExtType(5, payload)))
    assert decoded == Digest(DigestAlgorithm.SHA256, raw.hex())


def test_a_digest_of_the_wrong_length_in_the_log_is_an_error() -> None:
    payload = b"\x92\xa6sha256\xc4\x1f" + bytes(31)
    with pytest.raises(ValueError, match="digest of 31 bytes"):
        MsgpackTranscoder().decode(msgpack.packb(msgpack.ExtType(5, payload)))


def test_memoised_values_are_shared_and_equal() -> None:
    t = MsgpackTranscoder()
    digest = Digest.of(b"x")
    state = {"tags": {Tag(f"t{i}"): digest for i in range(100)}, "actor": Actor.system()}
    first, second = t.decode(t.encode(state)), t.decode(t.encode(state))
    assert first == second == state
    values = list(first["tags"].values())
    assert all(v is values[0] for v in values)  # one instance for one payload
    assert type(next(iter(first["tags"]))) is Tag
