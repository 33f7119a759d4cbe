"""msgpack transcoder for event and snapshot state, with frozen ExtType codes.

Use it with ``TRANSCODER_TOPIC=cargohold.adapters.transcoder:MsgpackTranscoder``. The
library's ``Application.construct_transcoder`` registers its JSON transcodings only on a
``JSONTranscoder``, so this class needs (and has) no ``register``.

Everything msgpack has a type for (None, bool, int, float, str, bytes, list, dict) is
packed natively. Types are checked exactly (``strict_types``), so a ``str`` subclass such
as ``Tag`` or a ``tuple`` never degrades to its base type: events round-trip to EQUAL
objects. Map keys may be any supported value (``dict[Digest, int]`` in snapshots).

ExtType codes. FROZEN: they are in every stored event. Never change or reuse a code; add
new types at the end. Payload "msgpack" means the payload is itself packed by this
transcoder, so it may nest ext types.

====  ====================  =====================================================
code  type                  payload
====  ====================  =====================================================
1     uuid.UUID             16 raw bytes
2     datetime.datetime     msgpack [year, month, day, hour, minute, second,
                            microsecond, utcoffset in microseconds or nil, fold]
3     decimal.Decimal       UTF-8 ``str(d)``
4     tuple                 msgpack array of the items
5     Digest                msgpack [algorithm, raw digest bytes]
6     RepositoryName        UTF-8 text
7     Tag                   UTF-8 text
8     MediaType             UTF-8 text
9     Descriptor            msgpack map {field name: value} (dataclass fields)
10    Actor                 msgpack [kind value, name]
11    ActorKind             UTF-8 value
12    HLCTimestamp          msgpack [wall_ms, logical]
13    DigestAlgorithm       UTF-8 value
14    set                   msgpack array of the items
15    frozenset             msgpack array of the items
16    int beyond 64 bits    UTF-8 decimal ``str(i)``
17    AccountName           UTF-8 text
18    TeamName              UTF-8 text
19    RobotShortName        UTF-8 text
20    Principal             msgpack [kind value, name]
21    PrincipalKind         UTF-8 value
22    RepositoryRole        UTF-8 value
23    TeamRole              UTF-8 value
24    Visibility            UTF-8 value
25    NamespaceKind         UTF-8 value
26    ApiScope              UTF-8 value
====  ====================  =====================================================

A named time zone (``ZoneInfo``) decodes as the fixed offset it had at that instant: the
instant and offset survive, the zone name does not (and PEP 495 makes an ambiguous
time with fold=1 unequal to its fixed-offset twin). Decoding does not re-validate the value
types' grammars: the log is the truth, and tightening a grammar later must not make
history unreadable.

PERF: decoded values of immutable types (UUIDs, digests, names, tags, actors, principals,
clock readings, enums) are memoised by payload in small per-code maps, so a snapshot of
10,000 tags on one manifest decodes that manifest's digest once, and a replay decodes
the site id and the actors of a busy log once (and a command's clock reading once for
all its events). Sharing one instance is safe because these types are
frozen; the maps are cleared when full, so they stay bounded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import msgpack
from eventsourcing.persistence import Transcoder, TranscodingNotRegisteredError

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

EXT_UUID: Final = 1
EXT_DATETIME: Final = 2
EXT_DECIMAL: Final = 3
EXT_TUPLE: Final = 4
EXT_DIGEST: Final = 5
EXT_REPOSITORY_NAME: Final = 6
EXT_TAG: Final = 7
EXT_MEDIA_TYPE: Final = 8
EXT_DESCRIPTOR: Final = 9
EXT_ACTOR: Final = 10
EXT_ACTOR_KIND: Final = 11
EXT_HLC_TIMESTAMP: Final = 12
EXT_DIGEST_ALGORITHM: Final = 13
EXT_SET: Final = 14
EXT_FROZENSET: Final = 15
EXT_BIG_INT: Final = 16
EXT_ACCOUNT_NAME: Final = 17
EXT_TEAM_NAME: Final = 18
EXT_ROBOT_SHORT_NAME: Final = 19
EXT_PRINCIPAL: Final = 20
EXT_PRINCIPAL_KIND: Final = 21
EXT_REPOSITORY_ROLE: Final = 22
EXT_TEAM_ROLE: Final = 23
EXT_VISIBILITY: Final = 24
EXT_NAMESPACE_KIND: Final = 25
EXT_API_SCOPE: Final = 26

_ONE_MICROSECOND: Final = timedelta(microseconds=1)
# Entries per memo map (see the module docstring) before it is cleared.
MEMO_SIZE: Final = 16_384
_DESCRIPTOR_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Descriptor))


class MsgpackTranscoder(Transcoder):
    """Encodes event and snapshot state as msgpack bytes; see the module docstring.

    Stateless and thread-safe. ``encode`` raises ``TypeError`` (the library's
    ``TranscodingNotRegisteredError``) for a type without an ext code; ``decode`` raises
    ``ValueError`` for an unknown ext code.
    """

    def encode(self, obj: Any) -> bytes:
        return _pack(obj)

    def decode(self, data: bytes) -> Any:
        return _unpack(data)


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(
        obj, default=_default, strict_types=True, use_bin_type=True, datetime=False
    )
    return packed


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


def _default(obj: Any) -> msgpack.ExtType:
    encoder = _ENCODERS.get(type(obj))
    if encoder is None:
        if type(obj) is int:  # only reaches here when msgpack overflowed
            return msgpack.ExtType(EXT_BIG_INT, str(obj).encode())
        msg = (
            f"MsgpackTranscoder cannot encode {type(obj).__module__}."
            f"{type(obj).__qualname__} ({obj!r:.100}): give the type a new ExtType code "
            "in cargohold.adapters.transcoder"
        )
        raise TranscodingNotRegisteredError(msg)
    code, payload = encoder(obj)
    return msgpack.ExtType(code, payload)


def _ext_hook(code: int, payload: bytes) -> Any:
    decoder = _DECODERS.get(code)
    if decoder is None:
        msg = f"MsgpackTranscoder met unknown ExtType code {code}"
        raise ValueError(msg)
    return decoder(payload)


def _text(payload: bytes) -> str:
    return payload.decode("utf-8")


# Encoders: exact type -> (code, payload bytes).


def _encode_datetime(dt: datetime) -> tuple[int, bytes]:
    offset = dt.utcoffset()
    offset_us = None if offset is None else offset // _ONE_MICROSECOND
    fields = [
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        dt.microsecond,
        offset_us,
        dt.fold,
    ]
    return EXT_DATETIME, _pack(fields)


_ZONES: dict[int, timezone] = {}


def _zone(offset_us: int) -> timezone:
    # PERF: every event has a timestamp, nearly all in one zone (UTC): build it once.
    tz = _ZONES.get(offset_us)
    if tz is None:
        tz = timezone(timedelta(microseconds=offset_us))
        if len(_ZONES) < 64:
            _ZONES[offset_us] = tz
    return tz


def _unpack_plain(data: bytes) -> Any:
    """``_unpack`` for a payload that holds no ext types (ints and nils only).

    PERF: without the ext hook and options, a third of the cost; an ext type in such a
    payload would come back as ``msgpack.ExtType`` and fail loudly where it is used."""
    return msgpack.unpackb(data)


def _decode_datetime(payload: bytes) -> datetime:
    year, month, day, hour, minute, second, microsecond, offset_us, fold = _unpack_plain(payload)
    tz = None if offset_us is None else _zone(offset_us)
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz, fold=fold)


def _encode_descriptor(d: Descriptor) -> tuple[int, bytes]:
    return EXT_DESCRIPTOR, _pack({f: getattr(d, f) for f in sorted(_DESCRIPTOR_FIELDS)})


def _decode_descriptor(payload: bytes) -> Descriptor:
    fields: dict[str, Any] = _unpack(payload)
    return Descriptor(**fields)


def _digest_prefix(algorithm: DigestAlgorithm) -> bytes:
    """The bytes that start the payload of every digest of ``algorithm``: a msgpack
    array of 2, the algorithm's name, and the bin header of its raw length."""
    packed = _pack([algorithm.value, bytes(algorithm.hex_length // 2)])
    return packed[: -(algorithm.hex_length // 2)]


_DIGEST_PREFIXES: Final = {a: _digest_prefix(a) for a in DigestAlgorithm}
_DIGEST_BY_PREFIX: Final = {p: a for a, p in _DIGEST_PREFIXES.items()}
_DIGEST_PREFIX_LENGTH: Final = len(_DIGEST_PREFIXES[DigestAlgorithm.SHA256])
if any(len(p) != _DIGEST_PREFIX_LENGTH for p in _DIGEST_BY_PREFIX):  # pragma: no cover
    raise RuntimeError("digest payload prefixes differ in length")


def _encode_digest(d: Digest) -> tuple[int, bytes]:
    # PERF: the exact bytes of _pack([algorithm, raw]), without a nested pack.
    return EXT_DIGEST, _DIGEST_PREFIXES[d.algorithm] + bytes.fromhex(d.hex)


def _decode_digest(payload: bytes) -> Digest:
    algorithm = _DIGEST_BY_PREFIX.get(payload[:_DIGEST_PREFIX_LENGTH])
    if algorithm is None:  # not our encoder's exact form: decode it generically
        name, raw = _unpack(payload)
        algorithm = DigestAlgorithm(name)
    else:
        raw = payload[_DIGEST_PREFIX_LENGTH:]
    hex_digest = raw.hex()
    if len(hex_digest) != algorithm.hex_length:
        raise ValueError(f"{algorithm.value} digest of {len(raw)} bytes in the log")
    # PERF: bytes.hex() is lowercase hex by construction; skip re-validating it.
    return Digest.trusted(algorithm, hex_digest)


def _decode_actor(payload: bytes) -> Actor:
    kind, name = _unpack(payload)
    return Actor(ActorKind(kind), name)


def _decode_hlc(payload: bytes) -> HLCTimestamp:
    wall_ms, logical = _unpack_plain(payload)
    return HLCTimestamp(wall_ms, logical)


def _decode_principal(payload: bytes) -> Principal:
    kind, name = _unpack(payload)
    return Principal(PrincipalKind(kind), name)


_ENCODERS: Final[dict[type, Callable[[Any], tuple[int, bytes]]]] = {
    UUID: lambda u: (EXT_UUID, u.bytes),
    datetime: _encode_datetime,
    Decimal: lambda d: (EXT_DECIMAL, str(d).encode()),
    tuple: lambda t: (EXT_TUPLE, _pack(list(t))),
    Digest: _encode_digest,
    RepositoryName: lambda n: (EXT_REPOSITORY_NAME, str.encode(n)),
    Tag: lambda t: (EXT_TAG, str.encode(t)),
    MediaType: lambda m: (EXT_MEDIA_TYPE, str.encode(m)),
    Descriptor: _encode_descriptor,
    Actor: lambda a: (EXT_ACTOR, _pack([a.kind.value, a.name])),
    ActorKind: lambda k: (EXT_ACTOR_KIND, k.value.encode()),
    HLCTimestamp: lambda h: (EXT_HLC_TIMESTAMP, _pack([h.wall_ms, h.logical])),
    DigestAlgorithm: lambda a: (EXT_DIGEST_ALGORITHM, a.value.encode()),
    set: lambda s: (EXT_SET, _pack(list(s))),
    frozenset: lambda s: (EXT_FROZENSET, _pack(list(s))),
    AccountName: lambda n: (EXT_ACCOUNT_NAME, str.encode(n)),
    TeamName: lambda n: (EXT_TEAM_NAME, str.encode(n)),
    RobotShortName: lambda n: (EXT_ROBOT_SHORT_NAME, str.encode(n)),
    Principal: lambda p: (EXT_PRINCIPAL, _pack([p.kind.value, p.name])),
    PrincipalKind: lambda k: (EXT_PRINCIPAL_KIND, k.value.encode()),
    RepositoryRole: lambda r: (EXT_REPOSITORY_ROLE, r.value.encode()),
    TeamRole: lambda r: (EXT_TEAM_ROLE, r.value.encode()),
    Visibility: lambda v: (EXT_VISIBILITY, v.value.encode()),
    NamespaceKind: lambda k: (EXT_NAMESPACE_KIND, k.value.encode()),
    ApiScope: lambda k: (EXT_API_SCOPE, k.value.encode()),
}


def _memo(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``decode`` memoised by payload (for immutable types only; see the module docstring)."""
    cache: dict[bytes, Any] = {}
    get = cache.get

    def memoised(payload: bytes) -> Any:
        value = get(payload)
        if value is None:
            value = decode(payload)
            if len(cache) >= MEMO_SIZE:
                cache.clear()
            cache[payload] = value
        return value

    return memoised


# NOTE: str subclasses are rebuilt with str.__new__, bypassing their grammar checks (see
# the module docstring).
_PLAIN_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    EXT_UUID: lambda p: UUID(bytes=p),
    EXT_DATETIME: _decode_datetime,
    EXT_DECIMAL: lambda p: Decimal(_text(p)),
    EXT_TUPLE: lambda p: tuple(_unpack(p)),
    EXT_DIGEST: _decode_digest,
    EXT_REPOSITORY_NAME: lambda p: str.__new__(RepositoryName, _text(p)),
    EXT_TAG: lambda p: str.__new__(Tag, _text(p)),
    EXT_MEDIA_TYPE: lambda p: str.__new__(MediaType, _text(p)),
    EXT_DESCRIPTOR: _decode_descriptor,
    EXT_ACTOR: _decode_actor,
    EXT_ACTOR_KIND: lambda p: ActorKind(_text(p)),
    EXT_HLC_TIMESTAMP: _decode_hlc,
    EXT_DIGEST_ALGORITHM: lambda p: DigestAlgorithm(_text(p)),
    EXT_SET: lambda p: set(_unpack(p)),
    EXT_FROZENSET: lambda p: frozenset(_unpack(p)),
    EXT_BIG_INT: lambda p: int(_text(p)),
    EXT_ACCOUNT_NAME: lambda p: str.__new__(AccountName, _text(p)),
    EXT_TEAM_NAME: lambda p: str.__new__(TeamName, _text(p)),
    EXT_ROBOT_SHORT_NAME: lambda p: str.__new__(RobotShortName, _text(p)),
    EXT_PRINCIPAL: _decode_principal,
    EXT_PRINCIPAL_KIND: lambda p: PrincipalKind(_text(p)),
    EXT_REPOSITORY_ROLE: lambda p: RepositoryRole(_text(p)),
    EXT_TEAM_ROLE: lambda p: TeamRole(_text(p)),
    EXT_VISIBILITY: lambda p: Visibility(_text(p)),
    EXT_NAMESPACE_KIND: lambda p: NamespaceKind(_text(p)),
    EXT_API_SCOPE: lambda p: ApiScope(_text(p)),
}

#: The codes of immutable types, whose decoded values may be shared (memoised).
_IMMUTABLE: Final = frozenset(
    {
        EXT_UUID,
        EXT_DIGEST,
        EXT_REPOSITORY_NAME,
        EXT_TAG,
        EXT_MEDIA_TYPE,
        EXT_ACTOR,
        EXT_ACTOR_KIND,
        EXT_HLC_TIMESTAMP,  # the events of one command share their clock reading
        EXT_DIGEST_ALGORITHM,
        EXT_ACCOUNT_NAME,
        EXT_TEAM_NAME,
        EXT_ROBOT_SHORT_NAME,
        EXT_PRINCIPAL,
        EXT_PRINCIPAL_KIND,
        EXT_REPOSITORY_ROLE,
        EXT_TEAM_ROLE,
        EXT_VISIBILITY,
        EXT_NAMESPACE_KIND,
        EXT_API_SCOPE,
    }
)
_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    code: _memo(decode) if code in _IMMUTABLE else decode
    for code, decode in _PLAIN_DECODERS.items()
}
