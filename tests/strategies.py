"""Hypothesis strategies for cargohold's value types, events and aggregates.

Reused by every tier: unit round-trips through the transcoder, and the store round-trips
through SQLite and PostgreSQL. ``event_classes_of(aggregate)`` (and its shorthands
``repository_event_classes()``, ``access_event_classes()``, ``all_event_classes()``)
discovers the event classes by introspection and ``events_of(cls)`` builds any of them
from its field annotations, so a new event class (or a new field type) is covered, or
fails loudly, without edits here. A new aggregate needs one line in ``AGGREGATES``.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from eventsourcing.domain import CanInitAggregate
from eventsourcing.utils import get_topic
from hypothesis import strategies as st

from cargohold.domain.accounts import Account, NamespaceClaim, Organization
from cargohold.domain.context import EventContext
from cargohold.domain.identity import (
    AccountName,
    ApiScope,
    NamespaceKind,
    Principal,
    PrincipalKind,
    RepositoryRole,
    RobotShortName,
    TeamName,
    TeamRole,
    Visibility,
)
from cargohold.domain.manifest import OCI_INDEX, OCI_MANIFEST, ParsedManifest
from cargohold.domain.mirror import Mirror
from cargohold.domain.proxy_cache import ProxyCache
from cargohold.domain.repository import Repository
from cargohold.domain.values import (
    NAME_MAX_LENGTH,
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

INT64_MAX = 2**63 - 1
_HEX = "0123456789abcdef"

# Values


def digests(algorithms: tuple[DigestAlgorithm, ...] = tuple(DigestAlgorithm)) -> Any:
    return st.sampled_from(algorithms).flatmap(
        lambda a: st.text(_HEX, min_size=a.hex_length, max_size=a.hex_length).map(
            lambda h: Digest(a, h)
        )
    )


_name_components = st.from_regex(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*", fullmatch=True)


def repository_names(max_components: int = 4) -> Any:
    return (
        st.lists(_name_components, min_size=1, max_size=max_components)
        .map("/".join)
        .filter(lambda n: len(n) <= NAME_MAX_LENGTH)
        .map(RepositoryName)
    )


def tags() -> Any:
    return st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", fullmatch=True).map(Tag)


_restricted_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,30}", fullmatch=True)

KNOWN_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.empty.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.example.sbom.v1+json; charset=utf-8",
)


def media_types() -> Any:
    return st.one_of(
        st.sampled_from(KNOWN_MEDIA_TYPES),
        st.builds(lambda t, s: f"{t}/{s}", _restricted_name, _restricted_name),
    ).map(MediaType)


def json_values(max_leaves: int = 10) -> Any:
    """Anything ``json.loads`` can produce (no NaN), as a descriptor's platform holds."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=10), inner, max_size=3),
        ),
        max_leaves=max_leaves,
    )


def annotation_maps() -> Any:
    return st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=4)


def platforms() -> Any:
    return st.fixed_dictionaries(
        {"architecture": st.sampled_from(["amd64", "arm64", "s390x"]), "os": st.just("linux")},
        optional={
            "variant": st.sampled_from(["v7", "v8"]),
            "os.features": st.lists(st.text(max_size=10), max_size=2),
            "x-extra": json_values(),
        },
    )


def descriptors(with_urls: bool | None = None) -> Any:
    """Descriptors; ``with_urls`` forces (True) or forbids (False) foreign ``urls``."""
    if with_urls is None:
        urls = st.lists(st.text(max_size=30), max_size=2).map(tuple)
    elif with_urls:
        urls = st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=2).map(tuple)
    else:
        urls = st.just(())
    return st.builds(
        Descriptor,
        media_type=media_types(),
        digest=digests(),
        size=st.integers(0, INT64_MAX),
        artifact_type=st.none() | media_types(),
        annotations=st.none() | annotation_maps(),
        platform=st.none() | platforms(),
        urls=urls,
    )


def actors() -> Any:
    return st.builds(Actor, st.sampled_from(ActorKind), st.text(max_size=40))


def hlc_timestamps() -> Any:
    return st.builds(HLCTimestamp, st.integers(0, 2**48), st.integers(0, 2**31))


def aware_datetimes() -> Any:
    offsets = st.one_of(
        st.just(UTC),
        st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))),
    )
    return st.datetimes(timezones=offsets)


def event_contexts() -> Any:
    return st.builds(EventContext, actors(), st.uuids(), hlc_timestamps(), st.text(max_size=40))


_account_grammar = st.from_regex(r"[a-z0-9]{1,12}(?:[._-][a-z0-9]{1,12}){0,3}", fullmatch=True)


def account_names() -> Any:
    """User and organisation names (Quay's grammar, 2 to 255 characters)."""
    return _account_grammar.filter(lambda n: len(n) >= 2).map(AccountName)


def team_names() -> Any:
    return _account_grammar.filter(lambda n: len(n) >= 2).map(TeamName)


def robot_short_names() -> Any:
    return st.from_regex(r"[a-z][a-z0-9_]{1,30}", fullmatch=True).map(RobotShortName)


def principals(kinds: tuple[PrincipalKind, ...] = tuple(PrincipalKind)) -> Any:
    """Principals of ``kinds`` in their stable name forms."""
    by_kind = {
        PrincipalKind.USER: account_names().map(Principal.user),
        PrincipalKind.TEAM: st.builds(Principal.team, account_names(), team_names()),
        PrincipalKind.ROBOT: st.builds(Principal.robot, account_names(), robot_short_names()),
    }
    return st.one_of(*(by_kind[k] for k in kinds))


# Events

_LEAF_STRATEGIES: dict[Any, Any] = {
    UUID: st.uuids(),
    datetime: aware_datetimes(),
    int: st.integers(0, INT64_MAX),
    str: st.text(max_size=50),
    Digest: digests(),
    RepositoryName: repository_names(),
    Tag: tags(),
    MediaType: media_types(),
    Descriptor: descriptors(),
    Actor: actors(),
    HLCTimestamp: hlc_timestamps(),
    bool: st.booleans(),
    bytes: st.binary(max_size=64),
    AccountName: account_names(),
    TeamName: team_names(),
    RobotShortName: robot_short_names(),
    Principal: principals(),
    PrincipalKind: st.sampled_from(PrincipalKind),
    RepositoryRole: st.sampled_from(RepositoryRole),
    TeamRole: st.sampled_from(TeamRole),
    Visibility: st.sampled_from(Visibility),
    NamespaceKind: st.sampled_from(NamespaceKind),
    ApiScope: st.sampled_from(ApiScope),
}


def strategy_for(hint: Any) -> Any:
    """A strategy for values of a field annotation; raises for a type it does not know."""
    if hint in _LEAF_STRATEGIES:
        return _LEAF_STRATEGIES[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else strategy_for(a) for a in args))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
    if origin is tuple:
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=4)
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    msg = f"tests/strategies.py has no strategy for field type {hint!r}: add one"
    raise TypeError(msg)


AGGREGATES: tuple[type[Any], ...] = (
    Repository,
    Account,
    Organization,
    NamespaceClaim,
    Mirror,
    ProxyCache,
)


def event_classes_of(aggregate: type[Any]) -> list[type[Any]]:
    """Every concrete event class nested on ``aggregate``, discovered, in name order."""
    base = aggregate.Event
    found = {
        value
        for value in vars(aggregate).values()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    }
    return sorted(found, key=lambda c: c.__qualname__)


def repository_event_classes() -> list[type[Repository.Event]]:
    """Every concrete event class nested on ``Repository``, discovered, in name order."""
    return event_classes_of(Repository)


def access_event_classes() -> list[type[Any]]:
    """Every event class of ``Account``, ``Organization`` and ``NamespaceClaim``."""
    return [c for a in (Account, Organization, NamespaceClaim) for c in event_classes_of(a)]


def all_event_classes() -> list[type[Any]]:
    return [c for a in AGGREGATES for c in event_classes_of(a)]


def _aggregate_of(event_class: type[Any]) -> type[Any]:
    """The aggregate class an event class is nested on (``Account.Created`` -> ``Account``)."""
    module = sys.modules[event_class.__module__]
    owner: type[Any] = getattr(module, event_class.__qualname__.split(".")[0])
    return owner


def events_of(event_class: type[Any]) -> Any:
    """Instances of ``event_class`` with every field drawn from its annotation."""
    aggregate = _aggregate_of(event_class)
    hints = typing.get_type_hints(event_class)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(event_class):
        if f.name == "originator_id":
            fields[f.name] = st.uuids()
        elif f.name == "originator_topic":
            fields[f.name] = st.just(get_topic(aggregate))
        elif f.name == "originator_version":
            fields[f.name] = st.integers(1, INT64_MAX)
        else:
            fields[f.name] = strategy_for(hints[f.name])
    if issubclass(event_class, CanInitAggregate):
        fields["originator_version"] = st.just(aggregate.INITIAL_VERSION)
    return st.fixed_dictionaries(fields).map(lambda kw: event_class(**kw))


def repository_events() -> Any:
    """Any event of any ``Repository`` event class."""
    return st.one_of(*(events_of(c) for c in repository_event_classes()))


def access_events() -> Any:
    """Any event of any ``Account``, ``Organization`` or ``NamespaceClaim`` event class."""
    return st.one_of(*(events_of(c) for c in access_event_classes()))


# Aggregates


def parsed_manifests(
    blobs: list[Descriptor] | None = None, children: list[Descriptor] | None = None
) -> Any:
    """Manifests; an image manifest over ``blobs`` or, given ``children``, an index."""
    if children:
        return st.builds(
            ParsedManifest,
            digest=digests(),
            media_type=st.just(OCI_INDEX),
            size=st.integers(0, 4 * 2**20),
            config=st.none(),
            layers=st.just(()),
            manifests=st.just(tuple(children)),
            subject=st.none() | descriptors(),
            artifact_type=st.none() | media_types(),
            annotations=st.none() | annotation_maps(),
        )
    chosen = blobs or []
    return st.builds(
        ParsedManifest,
        digest=digests(),
        media_type=st.just(OCI_MANIFEST),
        size=st.integers(0, 4 * 2**20),
        config=st.sampled_from(chosen) if chosen else descriptors(with_urls=True),
        layers=st.lists(st.sampled_from(chosen), max_size=3).map(tuple) if chosen else st.just(()),
        manifests=st.just(()),
        subject=st.none() | descriptors(),
        artifact_type=st.none() | media_types(),
        annotations=st.none() | annotation_maps(),
    )


@st.composite
def repositories(draw: st.DrawFn, max_blobs: int = 5, max_tags: int = 5) -> Repository:
    """A ``Repository`` built by valid commands: blobs, manifests, an index, tags."""
    ctx = draw(event_contexts())
    repo = Repository.create(draw(repository_names()), ctx)
    blobs = draw(st.lists(descriptors(with_urls=False), max_size=max_blobs))
    for blob in blobs:
        repo.link_blob(blob.digest, blob.size, draw(event_contexts()))
    manifests = draw(st.lists(parsed_manifests(blobs), max_size=3))
    for manifest in manifests:
        repo.push_manifest(manifest, draw(event_contexts()))
    if len(manifests) > 0 and draw(st.booleans()):
        children = [Descriptor(m.media_type, m.digest, m.size) for m in manifests if not m.is_index]
        repo.push_manifest(draw(parsed_manifests(children=children)), draw(event_contexts()))
    if repo.manifests:
        targets = sorted(repo.manifests, key=str)
        for tag in draw(st.lists(tags(), max_size=max_tags)):
            repo.tag(tag, draw(st.sampled_from(targets)), draw(event_contexts()))
    return repo
