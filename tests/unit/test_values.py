"""The OCI grammars of the value types."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cargohold.domain.errors import (
    DigestInvalid,
    DigestUnsupported,
    InvalidInput,
    MediaTypeInvalid,
    NameInvalid,
    ReferenceInvalid,
    TagInvalid,
)
from cargohold.domain.values import (
    NAME_MAX_LENGTH,
    Actor,
    ActorKind,
    Digest,
    DigestAlgorithm,
    HLCTimestamp,
    MediaType,
    RepositoryName,
    Tag,
    parse_reference,
)
from tests import strategies as s

SHA256_EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# Repository names


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "ubuntu",
        "library/ubuntu",
        "my-org/my.app/sub_dir__x/y",
        "a-----b",
        "0/1/2/3/4/5",
        "a" * NAME_MAX_LENGTH,
    ],
)
def test_valid_names(name: str) -> None:
    parsed = RepositoryName(name)
    assert parsed == name
    assert isinstance(parsed, str)
    assert RepositoryName.parse(name) == parsed


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Ubuntu",
        "library/Ubuntu",
        "/ubuntu",
        "ubuntu/",
        "library//ubuntu",
        "-ubuntu",
        "ubuntu-",
        "a..b",
        "a___b",
        "a._b",
        "a b",
        "a:b",
        "a@b",
        "ubuntu\n",
        "a" * (NAME_MAX_LENGTH + 1),
        "ä",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        RepositoryName(name)


def test_name_length_limit_counts_the_whole_path() -> None:
    ok = "/".join(["a" * 127, "b" * 127])  # 255
    assert RepositoryName(ok) == ok
    with pytest.raises(NameInvalid, match="longer than"):
        RepositoryName(ok + "c")


def test_name_must_be_a_string() -> None:
    with pytest.raises(NameInvalid):
        RepositoryName(b"ubuntu")  # type: ignore[arg-type]


@given(s.repository_names())
def test_generated_names_parse_to_themselves(name: RepositoryName) -> None:
    assert RepositoryName(str(name)) == name
    assert name.namespace == name.split("/")[0]


@given(st.text(min_size=1, max_size=20))
def test_names_with_uppercase_or_odd_characters_are_rejected(text: str) -> None:
    if any(c.isupper() or c in " :@\t\n" for c in text):
        with pytest.raises(NameInvalid):
            RepositoryName(text)


def test_namespace() -> None:
    assert RepositoryName("org/team/app").namespace == "org"
    assert RepositoryName("ubuntu").namespace == "ubuntu"


# Tags


@pytest.mark.parametrize("tag", ["latest", "v1.0.0", "_", "A", "1", "a-b_c.d", "x" * 128])
def test_valid_tags(tag: str) -> None:
    assert Tag(tag) == tag
    assert Tag.parse(tag) == tag


@pytest.mark.parametrize(
    "tag", ["", ".hidden", "-x", "x" * 129, "a/b", "a:b", "a b", "a+b", "é", "latest\n"]
)
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(TagInvalid):
        Tag(tag)


@given(s.tags())
def test_generated_tags_parse_to_themselves(tag: Tag) -> None:
    assert Tag(str(tag)) == tag
    assert 1 <= len(tag) <= 128


# Digests


def test_parse_sha256() -> None:
    d = Digest.parse(SHA256_EMPTY)
    assert d.algorithm is DigestAlgorithm.SHA256
    assert str(d) == SHA256_EMPTY
    assert d == Digest.of(b"")


def test_parse_sha512() -> None:
    hexed = hashlib.sha512(b"x").hexdigest()
    d = Digest.parse(f"sha512:{hexed}")
    assert d.algorithm is DigestAlgorithm.SHA512
    assert d == Digest.of(b"x", DigestAlgorithm.SHA512)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        ":abc",
        SHA256_EMPTY.upper(),
        SHA256_EMPTY[:-1] + "B",  # uppercase hex
        SHA256_EMPTY[:-1],  # too short
        SHA256_EMPTY + "0",  # too long
        SHA256_EMPTY[:-1] + "g",  # not hex
        "sha512:" + "a" * 64,  # sha512 with sha256 length
        "sha256:" + "a" * 128,
        "sha256 :" + "a" * 64,
        "SHA256:" + "a" * 64,
        " " + SHA256_EMPTY,
    ],
)
def test_invalid_digests(text: str) -> None:
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


@pytest.mark.parametrize("text", ["sha384:" + "a" * 96, "md5:" + "a" * 32, "blake3:abc"])
def test_unsupported_algorithms(text: str) -> None:
    with pytest.raises(DigestUnsupported):
        Digest.parse(text)


def test_digest_errors_are_invalid_input() -> None:
    assert issubclass(DigestInvalid, InvalidInput)
    assert issubclass(DigestUnsupported, InvalidInput)


@given(st.binary(), st.sampled_from(DigestAlgorithm))
def test_digest_of_round_trips_through_its_string(data: bytes, algorithm: DigestAlgorithm) -> None:
    d = Digest.of(data, algorithm)
    assert Digest.parse(str(d)) == d
    assert d.hex == hashlib.new(algorithm.value, data).hexdigest()
    assert len(d.hex) == algorithm.hex_length


@given(s.digests())
def test_generated_digests_round_trip(d: Digest) -> None:
    assert Digest.parse(str(d)) == d
    assert hash(Digest.parse(str(d))) == hash(d)


@given(st.text(max_size=80))
def test_parse_never_raises_anything_but_our_errors(text: str) -> None:
    with contextlib.suppress(DigestInvalid, DigestUnsupported):
        Digest.parse(text)


# References


def test_reference_tag() -> None:
    ref = parse_reference("latest")
    assert isinstance(ref, Tag) and ref == "latest"


def test_reference_digest() -> None:
    ref = parse_reference(SHA256_EMPTY)
    assert isinstance(ref, Digest) and str(ref) == SHA256_EMPTY


@pytest.mark.parametrize("text", ["", "sha256:abc", "bad tag", ".x", "a" * 129])
def test_invalid_references(text: str) -> None:
    with pytest.raises(ReferenceInvalid):
        parse_reference(text)


def test_reference_with_an_unsupported_algorithm() -> None:
    # Unsupported, not invalid: the HTTP layer maps it to UNSUPPORTED.
    with pytest.raises(DigestUnsupported):
        parse_reference("sha384:" + "a" * 96)


@given(s.tags() | s.digests())
def test_generated_references_parse_back(ref: Tag | Digest) -> None:
    assert parse_reference(str(ref)) == ref


# Media types


@pytest.mark.parametrize(
    "text",
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "text/plain",
        "application/json; charset=utf-8",
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    ],
)
def test_valid_media_types(text: str) -> None:
    assert MediaType(text) == text


@pytest.mark.parametrize(
    "text", ["", "application", "application/", "/json", "a/b/c", "app lication/json", "é/x"]
)
def test_invalid_media_types(text: str) -> None:
    with pytest.raises(MediaTypeInvalid):
        MediaType(text)


@given(s.media_types())
def test_generated_media_types_parse_to_themselves(media_type: MediaType) -> None:
    assert MediaType(str(media_type)) == media_type


# Small types


def test_actor_constructors() -> None:
    assert Actor.system() == Actor(ActorKind.SYSTEM, "cargohold")
    assert Actor.anonymous().kind is ActorKind.ANONYMOUS


def test_hlc_order() -> None:
    assert HLCTimestamp(1, 5) < HLCTimestamp(2, 0) < HLCTimestamp(2, 1)
    assert str(HLCTimestamp(10, 2)) == "10.2"
