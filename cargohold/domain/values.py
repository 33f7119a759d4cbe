"""Value types of the OCI specs, parsed at the edge.

Nothing past ``http/`` holds a raw digest, name or tag string: they are parsed here into
these frozen types, which reject anything off the grammar with a typed ``InvalidInput``.
The grammars are those of the OCI distribution spec (names, tags) and image spec
(digests, descriptors); media types follow RFC 6838.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cargohold.domain.errors import (
    DigestInvalid,
    DigestUnsupported,
    MediaTypeInvalid,
    NameInvalid,
    ReferenceInvalid,
    TagInvalid,
)

# OCI distribution spec: <name> components separated by "/", each matching this.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
# NOTE: the spec puts no bound on names, but distribution and most registries cap them
# at 255 characters so that "<host>/<name>" fits common limits. We do the same.
NAME_MAX_LENGTH = 255
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Image spec: digest ::= algorithm ":" encoded
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
# PERF: one C-level match instead of a Python loop over 64 or 128 characters.
_LOWER_HEX_RE = re.compile(r"[0-9a-f]*")
# RFC 6838 restricted-name, plus optional parameters (which we keep verbatim).
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE_RE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}(?:\s*;.*)?")


class DigestAlgorithm(enum.Enum):
    """The digest algorithms we verify. The value is the spec's algorithm identifier."""

    SHA256 = "sha256"
    SHA512 = "sha512"

    @property
    def hex_length(self) -> int:
        return 64 if self is DigestAlgorithm.SHA256 else 128

    def hasher(self) -> Any:
        """A fresh ``hashlib`` object for this algorithm."""
        return hashlib.new(self.value)


@functools.total_ordering
@dataclass(frozen=True)
class Digest:
    """A content digest, ``<algorithm>:<lowercase hex>``.

    ``Digest.parse`` raises ``DigestInvalid`` for anything off the image-spec grammar (or
    an encoded part of the wrong length or case for a registered algorithm) and
    ``DigestUnsupported`` for a well-formed digest of an algorithm we do not verify.
    """

    algorithm: DigestAlgorithm
    hex: str

    def __post_init__(self) -> None:
        if len(self.hex) != self.algorithm.hex_length or not _is_lower_hex(self.hex):
            raise DigestInvalid(f"invalid {self.algorithm.value} digest encoding: {self.hex!r}")
        # PERF: views and responses render digests far more often than they are built.
        object.__setattr__(self, "_text", f"{self.algorithm.value}:{self.hex}")

    @classmethod
    def trusted(cls, algorithm: DigestAlgorithm, hex: str) -> Digest:
        """A digest built without checking ``hex``: only for values we produced ourselves
        (``bytes.hex()`` of a stored raw digest is lowercase hex by construction).

        PERF: the transcoder decodes every digest of a snapshot and of each event with
        this; validating them all again made loading a 10,000-tag repository slow.
        """
        digest = object.__new__(cls)
        object.__setattr__(digest, "algorithm", algorithm)
        object.__setattr__(digest, "hex", hex)
        object.__setattr__(digest, "_text", f"{algorithm.value}:{hex}")
        return digest

    @classmethod
    def parse(cls, text: str) -> Digest:
        if not isinstance(text, str):
            raise DigestInvalid("digest must be a string")
        m = _DIGEST_RE.fullmatch(text)
        if m is None:
            raise DigestInvalid(f"invalid digest: {text[:200]!r}")
        try:
            algorithm = DigestAlgorithm(m.group(1))
        except ValueError:
            raise DigestUnsupported(f"unsupported digest algorithm: {m.group(1)!r}") from None
        return cls(algorithm, m.group(2))

    @classmethod
    def of(cls, data: bytes, algorithm: DigestAlgorithm = DigestAlgorithm.SHA256) -> Digest:
        h = algorithm.hasher()
        h.update(data)
        return cls(algorithm, h.hexdigest())

    def __str__(self) -> str:
        text: str = self.__dict__["_text"]
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Digest):
            return NotImplemented
        return (self.algorithm.value, self.hex) < (other.algorithm.value, other.hex)


def _is_lower_hex(text: str) -> bool:
    return _LOWER_HEX_RE.fullmatch(text) is not None


class RepositoryName(str):
    """A repository name such as ``library/ubuntu``; a ``str`` that passed the grammar."""

    __slots__ = ()

    def __new__(cls, text: str) -> RepositoryName:
        if not isinstance(text, str):
            raise NameInvalid("repository name must be a string")
        if len(text) > NAME_MAX_LENGTH:
            raise NameInvalid(f"repository name longer than {NAME_MAX_LENGTH} characters")
        if _NAME_RE.fullmatch(text) is None:
            raise NameInvalid(f"invalid repository name: {text[:200]!r}")
        return super().__new__(cls, text)

    @classmethod
    def parse(cls, text: str) -> RepositoryName:
        return cls(text)

    @property
    def namespace(self) -> str:
        """The first path component (the user or organisation, as in Quay)."""
        return self.split("/", 1)[0]

    def __repr__(self) -> str:
        return f"RepositoryName({str.__repr__(self)})"


class Tag(str):
    """A tag such as ``latest``; a ``str`` that passed ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``."""

    __slots__ = ()

    def __new__(cls, text: str) -> Tag:
        if not isinstance(text, str) or _TAG_RE.fullmatch(text) is None:
            raise TagInvalid(f"invalid tag: {str(text)[:200]!r}")
        return super().__new__(cls, text)

    @classmethod
    def parse(cls, text: str) -> Tag:
        return cls(text)

    def __repr__(self) -> str:
        return f"Tag({str.__repr__(self)})"


Reference = Tag | Digest


def parse_reference(text: str) -> Reference:
    """A manifest reference: a digest if it contains ``:``, else a tag."""
    try:
        if ":" in text:
            return Digest.parse(text)
        return Tag(text)
    except (DigestInvalid, TagInvalid) as e:
        raise ReferenceInvalid(f"invalid reference: {text[:200]!r}") from e


class MediaType(str):
    """An RFC 6838 media type such as ``application/vnd.oci.image.manifest.v1+json``."""

    __slots__ = ()

    def __new__(cls, text: str) -> MediaType:
        if not isinstance(text, str) or _MEDIA_TYPE_RE.fullmatch(text) is None:
            raise MediaTypeInvalid(f"invalid media type: {str(text)[:200]!r}")
        return super().__new__(cls, text)

    def __repr__(self) -> str:
        return f"MediaType({str.__repr__(self)})"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (image-spec ``descriptor.md``).

    ``annotations`` and ``platform`` are kept as given (JSON objects); they are plain
    dicts, so this type is frozen but not hashable when they are set.
    """

    media_type: MediaType
    digest: Digest
    size: int
    artifact_type: MediaType | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = field(default=())


class ActorKind(enum.Enum):
    """Who caused an event; Quay's performer kinds plus the machinery's own."""

    ANONYMOUS = "anonymous"
    USER = "user"
    ROBOT = "robot"
    MIRROR = "mirror"
    SITE = "site"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    name: str

    SYSTEM_NAME: ClassVar[str] = "cargohold"

    @classmethod
    def system(cls) -> Actor:
        return cls(ActorKind.SYSTEM, cls.SYSTEM_NAME)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(ActorKind.ANONYMOUS, "")


@dataclass(frozen=True, order=True)
class HLCTimestamp:
    """A hybrid logical clock reading: wall-clock milliseconds plus a logical counter.

    Ordered lexicographically (wall, logical); ties between sites are broken by site id
    in the merge rules, not here.
    """

    wall_ms: int
    logical: int = 0

    def __str__(self) -> str:
        return f"{self.wall_ms}.{self.logical}"
