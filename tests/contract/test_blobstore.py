"""The ``BlobStore`` contract: one suite, run by every adapter.

``BlobStoreContract`` holds the tests; an adapter's subclass provides ``make_store``
(a new instance over the *same* storage on every call, so a second call is a restart)
and ``make_broken_store`` (one whose ``check`` must fail).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minio import Minio

from cargohold.adapters.blobs.filesystem import FilesystemBlobStore
from cargohold.adapters.blobs.s3 import S3BlobStore
from cargohold.domain.errors import (
    BlobUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
    StorageError,
    UploadUnknown,
)
from cargohold.domain.ports import BlobStore
from cargohold.domain.values import Digest, DigestAlgorithm
from tests.fixtures.minio import MinioServer
from tests.fixtures.services import free_port

SHA256 = DigestAlgorithm.SHA256
SHA512 = DigestAlgorithm.SHA512
MiB = 1024 * 1024

CONTENT = bytes(range(256)) * 3 + b"tail"  # 772 bytes, no repeating chunk boundaries


class Trickle:
    """A stream that hands out at most ``step`` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int = 100) -> None:
        self._data = data
        self._pos = 0
        self._step = step
        self.reads = 0

    def read(self, size: int) -> bytes:
        self.reads += 1
        n = min(size, self._step)
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    @property
    def consumed(self) -> int:
        return self._pos


class Broken:
    """A stream that yields ``data`` and then fails, like a client that went away."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int) -> bytes:
        if self._data:
            chunk, self._data = self._data[:size], self._data[size:]
            return chunk
        raise ConnectionResetError("client went away")


def content_of(
    store: BlobStore, digest: Digest, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join(store.read(digest, offset, length))


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ between seeds and have no short period."""
    out = bytearray()
    counter = itertools.count()
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{next(counter)}".encode()).digest()
    return bytes(out[:size])


class BlobStoreContract:
    """Every ``BlobStore`` adapter must pass these."""

    def make_store(self, **options: Any) -> BlobStore:
        raise NotImplementedError

    def make_broken_store(self) -> BlobStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> BlobStore:
        return self.make_store(chunk_size=64 * 1024)

    # -- put -------------------------------------------------------------------------

    @pytest.mark.parametrize("algorithm", [SHA256, SHA512])
    def test_put_streams_and_verifies_either_algorithm(
        self, store: BlobStore, algorithm: DigestAlgorithm
    ) -> None:
        expected = Digest.of(CONTENT, algorithm)
        stream = Trickle(CONTENT, step=50)

        digest, size = store.put(stream, expected, len(CONTENT))

        assert (digest, size) == (expected, len(CONTENT))
        assert stream.reads > 1  # it really streamed
        assert store.stat(expected) == len(CONTENT)
        assert store.exists(expected)
        assert content_of(store, expected) == CONTENT
        assert list(store.uploads()) == []

    def test_put_without_expected_digest_commits_under_sha256(self, store: BlobStore) -> None:
        digest, size = store.put(Trickle(CONTENT))

        assert digest == Digest.of(CONTENT)
        assert size == len(CONTENT)
        assert content_of(store, digest) == CONTENT

    @pytest.mark.parametrize("algorithm", [SHA256, SHA512])
    def test_put_with_wrong_digest_commits_nothing(
        self, store: BlobStore, algorithm: DigestAlgorithm
    ) -> None:
        wrong = Digest.of(b"something else", algorithm)

        with pytest.raises(DigestInvalid):
            store.put(Trickle(CONTENT), wrong)

        assert not store.exists(wrong)
        assert not store.exists(Digest.of(CONTENT, algorithm))
        assert list(store.uploads()) == []

    @pytest.mark.parametrize("claimed", [len(CONTENT) - 1, len(CONTENT) + 1, 0])
    def test_put_with_wrong_size_commits_nothing(self, store: BlobStore, claimed: int) -> None:
        digest = Digest.of(CONTENT)

        with pytest.raises(SizeInvalid):
            store.put(Trickle(CONTENT), digest, claimed)

        assert not store.exists(digest)
        assert list(store.uploads()) == []

    def test_put_of_existing_content_is_idempotent(self, store: BlobStore) -> None:
        first = store.put(Trickle(CONTENT))
        second = store.put(Trickle(CONTENT), Digest.of(CONTENT))

        assert first == second
        assert content_of(store, first[0]) == CONTENT

    def test_put_of_empty_content(self, store: BlobStore) -> None:
        digest, size = store.put(Trickle(b""), Digest.of(b""), 0)

        assert size == 0
        assert store.stat(digest) == 0
        assert content_of(store, digest) == b""

    def test_put_propagates_the_callers_stream_error(self, store: BlobStore) -> None:
        with pytest.raises(ConnectionResetError, match="client went away"):
            store.put(Broken(CONTENT))

        assert not store.exists(Digest.of(CONTENT))
        assert list(store.uploads()) == []

    # -- staged uploads ----------------------------------------------------------------

    def test_resumable_upload_in_chunks(self, store: BlobStore) -> None:
        digest = Digest.of(CONTENT)
        upload_id = store.start_upload()
        assert store.upload_size(upload_id) == 0

        offset = 0
        for piece in (CONTENT[:100], CONTENT[100:101], CONTENT[101:]):
            offset = store.append(upload_id, Trickle(piece, step=33), offset)
            assert store.upload_size(upload_id) == offset
        assert not store.exists(digest)  # nothing is visible before commit

        assert store.commit(upload_id, digest, len(CONTENT)) == len(CONTENT)
        assert content_of(store, digest) == CONTENT
        with pytest.raises(UploadUnknown):
            store.upload_size(upload_id)

    @settings(
        max_examples=12,
        deadline=None,
        # NOTE: every adapter's subclass runs this same method (that is the point of a
        # contract); the store is only created once per test, not per example, which is
        # fine since blobs are content-addressed and uploads are independent.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=4))
    def test_any_chunk_split_commits_the_same_blob(
        self, store: BlobStore, data: bytes, cuts: list[int]
    ) -> None:
        bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
        upload_id = store.start_upload()
        for start, end in itertools.pairwise(bounds):
            assert store.append(upload_id, Trickle(data[start:end], step=7), start) == end

        digest = Digest.of(data, SHA512)
        assert store.commit(upload_id, digest) == len(data)
        assert content_of(store, digest) == data

    def test_append_at_a_wrong_offset_is_a_range_error(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:10]), 0)

        for offset in (0, 9, 11, 1000):
            stream = Trickle(CONTENT[10:])
            with pytest.raises(RangeInvalid):
                store.append(upload_id, stream, offset)
            assert stream.consumed == 0

        assert store.upload_size(upload_id) == 10
        assert store.append(upload_id, Trickle(CONTENT[10:]), 10) == len(CONTENT)
        assert store.commit(upload_id, Digest.of(CONTENT)) == len(CONTENT)

    def test_truncate_takes_back_the_last_append(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:10]), 0)
        store.append(upload_id, Trickle(CONTENT[10:20]), 10)
        store.append(upload_id, Trickle(b"wrong tail"), 20)

        store.truncate_upload(upload_id, 20)
        assert store.upload_size(upload_id) == 20
        with pytest.raises(RangeInvalid):
            store.truncate_upload(upload_id, 21)
        with pytest.raises(UploadUnknown):
            store.truncate_upload("no-such-upload", 0)
        # the hash is still right after the cut, with or without the cached state
        assert store.append(upload_id, Trickle(CONTENT[20:]), 20) == len(CONTENT)
        assert store.commit(upload_id, Digest.of(CONTENT)) == len(CONTENT)
        assert content_of(store, Digest.of(CONTENT)) == CONTENT

    def test_append_with_length_reads_exactly_that_much(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        stream = Trickle(CONTENT, step=64)

        assert store.append(upload_id, stream, 0, length=300) == 300

        assert stream.consumed == 300
        assert store.commit(upload_id, Digest.of(CONTENT[:300])) == 300

    def test_short_append_appends_nothing(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:100]), 0)

        with pytest.raises(SizeInvalid):
            store.append(upload_id, Trickle(CONTENT[100:200]), 100, length=500)

        assert store.upload_size(upload_id) == 100
        assert store.append(upload_id, Trickle(CONTENT[100:]), 100) == len(CONTENT)
        assert store.commit(upload_id, Digest.of(CONTENT)) == len(CONTENT)

    def test_failed_stream_appends_nothing(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:100]), 0)

        with pytest.raises(ConnectionResetError):
            store.append(upload_id, Broken(CONTENT[100:400]), 100)

        assert store.upload_size(upload_id) == 100
        store.append(upload_id, Trickle(CONTENT[100:]), 100)
        assert store.commit(upload_id, Digest.of(CONTENT)) == len(CONTENT)

    def test_empty_append_changes_nothing(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:5]), 0)

        assert store.append(upload_id, Trickle(b""), 5) == 5
        assert store.append(upload_id, Trickle(CONTENT), 5, length=0) == 5

        assert store.upload_size(upload_id) == 5
        assert store.commit(upload_id, Digest.of(CONTENT[:5])) == 5

    @pytest.mark.parametrize("algorithm", [SHA256, SHA512])
    def test_commit_with_wrong_digest_keeps_the_staging(
        self, store: BlobStore, algorithm: DigestAlgorithm
    ) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT), 0)
        wrong = Digest.of(CONTENT + b"!", algorithm)

        with pytest.raises(DigestInvalid):
            store.commit(upload_id, wrong)

        assert not store.exists(wrong)
        assert store.upload_size(upload_id) == len(CONTENT)
        assert store.commit(upload_id, Digest.of(CONTENT, algorithm)) == len(CONTENT)

    def test_commit_with_wrong_size_keeps_the_staging(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT), 0)

        with pytest.raises(SizeInvalid):
            store.commit(upload_id, Digest.of(CONTENT), len(CONTENT) + 1)

        assert not store.exists(Digest.of(CONTENT))
        assert store.upload_size(upload_id) == len(CONTENT)

    def test_commit_of_an_empty_upload(self, store: BlobStore) -> None:
        upload_id = store.start_upload()

        assert store.commit(upload_id, Digest.of(b"")) == 0
        assert store.stat(Digest.of(b"")) == 0

    def test_commit_of_multi_mib_parts(self, store: BlobStore) -> None:
        # Parts of at least 5 MiB and a small tail: S3 can compose these server-side.
        data = pattern(11 * MiB + 3)
        upload_id = store.start_upload()
        offset = 0
        for end in (6 * MiB, 11 * MiB, len(data)):
            offset = store.append(upload_id, Trickle(data[offset:end], step=MiB), offset)

        digest = Digest.of(data)
        assert store.commit(upload_id, digest) == len(data)
        assert hashlib.sha256(b"".join(store.read(digest))).hexdigest() == digest.hex
        assert content_of(store, digest, 6 * MiB - 2, 5) == data[6 * MiB - 2 : 6 * MiB + 3]

    def test_commit_is_idempotent_on_content(self, store: BlobStore) -> None:
        digest = Digest.of(CONTENT)
        first, second = store.start_upload(), store.start_upload()
        for upload_id in (first, second):
            store.append(upload_id, Trickle(CONTENT), 0)

        assert store.commit(first, digest) == len(CONTENT)
        assert store.commit(second, digest) == len(CONTENT)

        assert content_of(store, digest) == CONTENT
        assert list(store.uploads()) == []
        for upload_id in (first, second):
            with pytest.raises(UploadUnknown):
                store.commit(upload_id, digest)

    def test_commit_of_existing_blob_still_verifies(self, store: BlobStore) -> None:
        digest, _ = store.put(Trickle(CONTENT))
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:-1]), 0)

        with pytest.raises(DigestInvalid):
            store.commit(upload_id, digest)

        assert store.upload_size(upload_id) == len(CONTENT) - 1

    def test_concurrent_uploads_of_the_same_content(self, store: BlobStore) -> None:
        data = pattern(300_000, seed=7)
        digest = Digest.of(data)
        workers = 4
        barrier = threading.Barrier(workers)
        results: list[int] = []
        errors: list[BaseException] = []

        def upload() -> None:
            try:
                upload_id = store.start_upload()
                store.append(upload_id, Trickle(data[:100_000], step=8192), 0)
                store.append(upload_id, Trickle(data[100_000:], step=8192), 100_000)
                barrier.wait(timeout=30)
                results.append(store.commit(upload_id, digest))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=upload) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

        assert errors == []
        assert results == [len(data)] * workers
        assert content_of(store, digest) == data
        assert list(store.uploads()) == []

    def test_cancel_discards_the_upload(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT), 0)

        store.cancel(upload_id)

        assert list(store.uploads()) == []
        assert not store.exists(Digest.of(CONTENT))
        with pytest.raises(UploadUnknown):
            store.upload_size(upload_id)
        with pytest.raises(UploadUnknown):
            store.append(upload_id, Trickle(CONTENT), len(CONTENT))
        with pytest.raises(UploadUnknown):
            store.cancel(upload_id)

    def test_uploads_lists_ids_with_start_times(self) -> None:
        ids = iter(["upload-a", "upload-b", "upload-c"])
        times = iter([1000.0, 2000.5, 3000.0])
        store = self.make_store(new_id=lambda: next(ids), clock=lambda: next(times))

        a, b, c = store.start_upload(), store.start_upload(), store.start_upload()
        store.append(b, Trickle(CONTENT), 0)
        assert (a, b, c) == ("upload-a", "upload-b", "upload-c")
        assert sorted(store.uploads()) == [
            ("upload-a", 1000.0),
            ("upload-b", 2000.5),
            ("upload-c", 3000.0),
        ]

        store.cancel(a)
        store.commit(b, Digest.of(CONTENT))
        assert list(store.uploads()) == [("upload-c", 3000.0)]

    def test_upload_survives_a_restart(self, store: BlobStore) -> None:
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:200]), 0)

        restarted = self.make_store()
        assert restarted.upload_size(upload_id) == 200
        assert [u for u, _ in restarted.uploads()] == [upload_id]
        assert restarted.append(upload_id, Trickle(CONTENT[200:]), 200) == len(CONTENT)
        with pytest.raises(DigestInvalid):  # a lost hasher is rebuilt, not trusted blindly
            restarted.commit(upload_id, Digest.of(CONTENT[:200]))
        assert restarted.commit(upload_id, Digest.of(CONTENT)) == len(CONTENT)
        assert content_of(store, Digest.of(CONTENT)) == CONTENT

    def test_a_stale_hasher_is_not_trusted(self, store: BlobStore) -> None:
        # One instance appends, another appends more, the first commits: the first's
        # cached hash state covers only its own append and must not be used.
        upload_id = store.start_upload()
        store.append(upload_id, Trickle(CONTENT[:200]), 0)
        self.make_store().append(upload_id, Trickle(CONTENT[200:]), 200)

        with pytest.raises(DigestInvalid):
            store.commit(upload_id, Digest.of(CONTENT[:200]))
        assert store.commit(upload_id, Digest.of(CONTENT)) == len(CONTENT)

    @pytest.mark.parametrize("upload_id", ["0123456789abcdef", "../../etc", "a/b", "", "x" * 300])
    def test_unknown_uploads(self, store: BlobStore, upload_id: str) -> None:
        with pytest.raises(UploadUnknown):
            store.upload_size(upload_id)
        with pytest.raises(UploadUnknown):
            store.append(upload_id, Trickle(CONTENT), 0)
        with pytest.raises(UploadUnknown):
            store.commit(upload_id, Digest.of(b""))
        with pytest.raises(UploadUnknown):
            store.cancel(upload_id)

    def test_default_upload_ids_are_unique(self, store: BlobStore) -> None:
        ids = {store.start_upload() for _ in range(5)}

        assert len(ids) == 5
        assert {u for u, _ in store.uploads()} == ids

    # -- reads ---------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("offset", "length", "expected"),
        [
            (0, None, CONTENT),
            (0, len(CONTENT), CONTENT),
            (0, 10, CONTENT[:10]),
            (300, 17, CONTENT[300:317]),
            (len(CONTENT) - 5, None, CONTENT[-5:]),
            (len(CONTENT) - 5, 5, CONTENT[-5:]),
            (len(CONTENT), None, b""),
            (123, 0, b""),
        ],
        ids=[
            "whole",
            "whole-explicit",
            "start",
            "middle",
            "end",
            "end-explicit",
            "at-end",
            "empty",
        ],
    )
    def test_ranged_reads(self, offset: int, length: int | None, expected: bytes) -> None:
        store = self.make_store(chunk_size=64)
        digest, _ = store.put(Trickle(CONTENT))

        chunks = list(store.read(digest, offset, length))

        assert b"".join(chunks) == expected
        assert all(0 < len(c) <= 64 for c in chunks)
        assert len(chunks) >= -(-len(expected) // 64)

    @pytest.mark.parametrize(
        ("offset", "length"),
        [
            (len(CONTENT) + 1, None),
            (-1, None),
            (0, len(CONTENT) + 1),
            (len(CONTENT) - 1, 2),
            (0, -1),
        ],
    )
    def test_reads_outside_the_blob_fail_before_yielding(
        self, store: BlobStore, offset: int, length: int | None
    ) -> None:
        digest, _ = store.put(Trickle(CONTENT))

        with pytest.raises(RangeInvalid):
            store.read(digest, offset, length)  # not iterated: the call itself raises

    def test_unknown_blob(self, store: BlobStore) -> None:
        digest = Digest.of(b"never stored")

        assert not store.exists(digest)
        with pytest.raises(BlobUnknown):
            store.stat(digest)
        with pytest.raises(BlobUnknown):
            store.read(digest)  # not iterated: the call itself raises

    def test_delete_is_idempotent(self, store: BlobStore) -> None:
        digest, _ = store.put(Trickle(CONTENT))
        other, _ = store.put(Trickle(b"other"))

        assert store.delete(digest) is True
        assert store.delete(digest) is False

        assert not store.exists(digest)
        with pytest.raises(BlobUnknown):
            store.stat(digest)
        assert content_of(store, other) == b"other"

    # -- operations ------------------------------------------------------------------

    def test_check_passes_on_a_usable_store(self, store: BlobStore) -> None:
        store.check()

        assert list(store.uploads()) == []  # the probe left nothing behind

    def test_check_fails_on_an_unusable_store(self) -> None:
        with pytest.raises(StorageError) as info:
            self.make_broken_store().check()

        assert "\n" not in str(info.value)


class TestFilesystemBlobStore(BlobStoreContract):
    @pytest.fixture(autouse=True)
    def _root(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.root = tmp_path / "blobs"

    def make_store(self, **options: Any) -> BlobStore:
        return FilesystemBlobStore(self.root, **options)

    def make_broken_store(self) -> BlobStore:
        not_a_directory = self.tmp_path / "file"
        not_a_directory.write_bytes(b"")
        return FilesystemBlobStore(not_a_directory)

    def test_a_read_is_also_a_file_over_its_range(self) -> None:
        store = self.make_store(chunk_size=64)
        digest, _ = store.put(Trickle(CONTENT))

        with store.read(digest, 300, 200) as f:  # type: ignore[attr-defined]
            assert f.seekable() and f.tell() == 0
            assert f.read(10) == CONTENT[300:310]
            assert f.seek(0, os.SEEK_END) == 200
            assert f.read(10) == b""  # never past the range
            f.seek(190)
            assert f.read() == CONTENT[490:500]
            f.seek(-20, os.SEEK_CUR)
            assert f.read(5) == CONTENT[480:485]

    def test_waitress_sends_a_read_from_the_file_within_its_range(self) -> None:
        # PERF: falcon hands a response stream with ``read`` to ``wsgi.file_wrapper``;
        # waitress then sends from it directly, sizing the body with seek/tell and
        # ``prepare(content_length)``. This fails if waitress changes that protocol.
        from waitress.buffers import ReadOnlyFileBasedBuffer

        store = self.make_store(chunk_size=64)
        digest, _ = store.put(Trickle(CONTENT))
        wrapper = ReadOnlyFileBasedBuffer(store.read(digest, 100, 500), 8192)

        assert wrapper.prepare(500) == 500
        sent = b""
        while len(wrapper):
            chunk = wrapper.get(123)
            taken = chunk[: max(1, len(chunk) - 1)]  # a socket takes part of what it gets
            wrapper.skip(len(taken))
            sent += taken
        assert sent == CONTENT[100:600]
        wrapper.close()

    def test_appends_start_the_writeback_early_on_linux(self) -> None:
        # PERF: without sync_file_range the fsync at commit writes the whole blob.
        if sys.platform != "linux":
            pytest.skip("sync_file_range is Linux only")
        from cargohold.adapters.blobs.filesystem import _sync_file_range

        assert _sync_file_range() is not None

    def test_layout_follows_the_key_tree(self, store: BlobStore) -> None:
        digest, _ = store.put(Trickle(CONTENT))

        path = self.root / "blobs" / "sha256" / digest.hex[:2] / digest.hex
        assert path.read_bytes() == CONTENT
        assert list((self.root / "uploads").iterdir()) == []


@pytest.mark.minio
class TestS3BlobStore(BlobStoreContract):
    @pytest.fixture(autouse=True)
    def _bucket(self, minio_server: MinioServer, minio_bucket: str) -> Iterator[None]:
        self.server = minio_server
        self.bucket = minio_bucket
        self.client = minio_server.client()
        yield

    def make_store(self, **options: Any) -> BlobStore:
        return S3BlobStore(self.client, self.bucket, prefix="registry/", **options)

    def make_broken_store(self) -> BlobStore:
        return S3BlobStore(self.client, f"{self.bucket}-missing")

    def test_layout_follows_the_key_tree(self, store: BlobStore) -> None:
        digest, _ = store.put(Trickle(CONTENT))

        names = [str(o.object_name) for o in self.client.list_objects(self.bucket, recursive=True)]
        assert names == [f"registry/blobs/sha256/{digest.hex[:2]}/{digest.hex}"]

    def test_small_parts_are_reassembled(self) -> None:
        # Parts below S3's 5 MiB multipart minimum cannot be composed server-side.
        store = self.make_store(chunk_size=MiB)
        data = pattern(7 * MiB, seed=3)
        upload_id = store.start_upload()
        for offset in range(0, len(data), 2 * MiB):
            store.append(upload_id, Trickle(data[offset : offset + 2 * MiB], step=MiB), offset)

        digest = Digest.of(data, SHA512)
        assert store.commit(upload_id, digest) == len(data)
        assert b"".join(store.read(digest)) == data

    def test_connect_builds_its_own_client(self) -> None:
        store = S3BlobStore.connect(
            self.server.endpoint,
            self.server.access_key,
            self.server.secret_key,
            self.bucket,
            secure=False,
            chunk_size=1024,
        )
        store.check()

        assert store.put(Trickle(CONTENT)) == (Digest.of(CONTENT), len(CONTENT))

    def test_unreachable_endpoint_is_a_storage_error(self) -> None:
        client = Minio(
            f"127.0.0.1:{free_port()}",
            access_key="x",
            secret_key="y",
            secure=False,
            http_client=urllib3.PoolManager(retries=False, timeout=2),
        )
        store = S3BlobStore(client, self.bucket)

        with pytest.raises(StorageError, match="unreachable"):
            store.check()
        with pytest.raises(StorageError):
            store.stat(Digest.of(b""))
