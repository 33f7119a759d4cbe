"""The bundle file format on its own: round trips, and every way a file can be wrong."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cargohold.replay.bundle_format import (
    CHUNK,
    BlobStart,
    BundleError,
    BundleReader,
    BundleWriter,
    EventFrame,
    Header,
    Trailer,
)

HEADER = Header(site_id="s", after=3, through=9, created_at="2026-01-01T00:00:00+00:00", repos=())


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _write(path: Path, blobs: list[bytes], events: int) -> int:
    with BundleWriter(path) as w:
        w.header(HEADER)
        for blob in blobs:
            # chunks of odd sizes: the writer re-cuts them to CHUNK
            pieces = [blob[i : i + 1000] for i in range(0, len(blob), 1000)]
            w.blob(_digest(blob), len(blob), iter(pieces))
        for n in range(events):
            w.event(EventFrame(4 + n, f"id-{n}", n + 1, "t:T", bytes([n]) * 10))
        return w.finish()


def _read(path: Path) -> tuple[list[Any], BundleReader]:
    with path.open("rb") as f:
        reader = BundleReader(f, "b")
        return list(reader.frames()), reader


def test_a_bundle_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "b"
    big = bytes(range(256)) * (CHUNK // 128 + 1)  # two chunks and a bit
    size = _write(path, [b"", b"small", big], events=3)
    assert size == path.stat().st_size and not (tmp_path / "b.partial").exists()
    frames, reader = _read(path)
    assert frames[0] == HEADER
    assert frames[1] == BlobStart(_digest(b""), 0)
    assert frames[2:4] == [BlobStart(_digest(b"small"), 5), b"small"]
    assert frames[4] == BlobStart(_digest(big), len(big))
    assert b"".join(frames[5:8]) == big and [len(f) for f in frames[5:7]] == [CHUNK, CHUNK]
    assert frames[8:11] == [
        EventFrame(4 + n, f"id-{n}", n + 1, "t:T", bytes([n]) * 10) for n in range(3)
    ]
    trailer = frames[11]
    assert isinstance(trailer, Trailer)
    assert (trailer.blobs, trailer.blob_bytes, trailer.events) == (3, 5 + len(big), 3)
    assert trailer.sha256 == reader.before_trailer


def test_a_writer_that_does_not_finish_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b"
    with pytest.raises(RuntimeError), BundleWriter(path) as w:
        w.header(HEADER)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_blob_that_reads_back_wrong_is_not_exported(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not match"), BundleWriter(tmp_path / "b") as w:
        w.header(HEADER)
        w.blob(_digest(b"right"), 5, iter([b"wrong"]))
    assert list(tmp_path.iterdir()) == []


def _bytes_of(*frames: Any) -> bytes:
    return b"".join(msgpack.packb(f, use_bin_type=True) for f in frames)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        (b"\x01\x02", "not a cargohold bundle"),
        (_bytes_of(["cargohold-bundle", {"version": 2}]), "format version 2"),
        (_bytes_of(HEADER.as_frame()), "truncated"),
        (_bytes_of(HEADER.as_frame())[:-3], "truncated"),
        (_bytes_of(HEADER.as_frame(), ["blob", _digest(b"ab"), 2], b"abc"), "match its size"),
        (_bytes_of(HEADER.as_frame(), ["blob", _digest(b"ab"), 2], b"a"), "truncated"),
        (_bytes_of(HEADER.as_frame(), ["event", 1, "x"]), "event frame is malformed"),
        (
            _bytes_of(HEADER.as_frame(), ["event", 1, "x", 1, "t", b""], ["blob", "d", 0]),
            "out of place",
        ),
        (_bytes_of(HEADER.as_frame(), {"what": 1}), "unknown kind"),
        (_bytes_of(HEADER.as_frame(), ["end", {"blobs": 0}]), "trailer is malformed"),
    ],
)
def test_what_is_not_an_intact_bundle_is_refused(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "b"
    path.write_bytes(content)
    with pytest.raises(BundleError, match=says):
        _read(path)


def test_data_after_the_trailer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b"
    _write(path, [b"x"], events=1)
    path.write_bytes(path.read_bytes() + msgpack.packb(["event", 1, "x", 1, "t", b""]))
    with pytest.raises(BundleError, match="after its trailer"):
        _read(path)


def test_an_altered_byte_changes_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "b"
    _write(path, [b"some content here"], events=2)
    data = bytearray(path.read_bytes())
    data[data.index(b"some content")] ^= 0x20  # "Some content": still well-formed
    path.write_bytes(bytes(data))
    frames, reader = _read(path)
    assert frames[-1].sha256 != reader.before_trailer
