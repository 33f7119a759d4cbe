"""The serving lanes: small reads are never queued behind a long request."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from cargohold.config import load_settings
from cargohold.http.server.inline_reads import InlineReads, is_tiny_read, serves_inline
from cargohold.http.server.lanes import LaneDispatcher, _is_quick_read


@dataclass
class FakeRequest:
    command: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeChannel:
    """What waitress queues: a channel whose first request decides the lane."""

    command: str
    path: str
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    served: threading.Event = field(default_factory=threading.Event)

    @property
    def requests(self) -> list[FakeRequest]:
        return [FakeRequest(self.command, self.path)]

    def service(self) -> None:
        self.started.set()
        self.release.wait(10)
        self.served.set()

    def cancel(self) -> None:
        self.release.set()


@pytest.mark.parametrize(
    ("method", "path", "quick"),
    [
        ("GET", "/v2/a/b/manifests/latest", True),
        ("HEAD", "/v2/a/b/blobs/sha256:00", True),
        ("GET", "/v2/a/b/tags/list", True),
        ("GET", "/v2/a/b/blobs/sha256:00", False),  # streams for as long as its client reads
        ("GET", "/v2/auth", False),  # may hash a password
        ("PATCH", "/v2/a/b/blobs/uploads/x", False),
        ("PUT", "/v2/a/b/manifests/latest", False),
        ("", "", False),  # a request waitress could not parse
    ],
)
def test_which_requests_are_small_reads(method: str, path: str, quick: bool) -> None:
    assert _is_quick_read(method, path) is quick


def test_small_reads_are_answered_while_long_requests_hold_every_other_thread() -> None:
    lanes = LaneDispatcher(read_threads=1, threads=2)
    downloads = [FakeChannel("GET", "/v2/a/b/blobs/sha256:00") for _ in range(3)]
    upload = FakeChannel("PATCH", "/v2/a/b/blobs/uploads/x")
    try:
        for slow in [*downloads, upload]:
            lanes.add_task(slow)
        # Both long-request threads are busy before the read arrives.
        deadline = time.monotonic() + 10
        while sum(s.started.is_set() for s in [*downloads, upload]) < 2:
            assert time.monotonic() < deadline, "the long-request threads never started"
            time.sleep(0.01)
        read = FakeChannel("GET", "/v2/a/b/manifests/latest")
        read.release.set()
        lanes.add_task(read)
        assert read.served.wait(5), "a manifest GET waited behind blob transfers"
        assert not any(slow.served.is_set() for slow in [*downloads, upload])
    finally:
        for slow in [*downloads, upload]:
            slow.release.set()
        assert lanes.shutdown(cancel_pending=True, timeout=5)
    assert sum(slow.served.is_set() for slow in [*downloads, upload]) >= 2


@pytest.mark.parametrize(
    ("method", "path", "tiny"),
    [
        ("GET", "/v2/", True),
        ("GET", "/v2/a/b/manifests/latest", True),
        ("HEAD", "/v2/a/b/manifests/sha256:00", True),
        ("HEAD", "/v2/a/b/blobs/sha256:00", True),
        ("GET", "/v2/a/b/tags/list", True),
        ("GET", "/v2/a/b/blobs/sha256:00", False),  # streams
        ("HEAD", "/v2/a/b/blobs/uploads/x", False),  # an upload's state
        ("GET", "/v2/_catalog", False),  # pages of the catalog: kept on the read lane
        ("GET", "/v2/a/b/referrers/sha256:00", False),
        ("GET", "/api/v1/repository/a/b", False),  # /api/v1 reads may be long
        ("GET", "/health", False),  # probes the blob store
        ("PUT", "/v2/a/b/manifests/latest", False),
        ("DELETE", "/v2/a/b/manifests/latest", False),
        ("GET", "/v2/a/b/manifests/latest/x", False),
    ],
)
def test_which_reads_are_tiny(method: str, path: str, tiny: bool) -> None:
    assert is_tiny_read(method, path) is tiny


@pytest.mark.parametrize("path", ["/v2/", "/v2/a/b/manifests/latest"])
def test_a_read_with_a_password_to_check_is_not_tiny(path: str) -> None:
    """Hashing a password (argon2) on the loop would stall every connection."""
    assert not is_tiny_read("GET", path, "Basic YWRtaW46cGFzc3dvcmQ=")
    assert not is_tiny_read("GET", path, "basic YWRtaW46cGFzc3dvcmQ=")
    assert is_tiny_read("GET", path, "Bearer eyJ0eXAiOiJKV1QifQ.e30.sig")


@pytest.mark.parametrize(
    ("values", "inline"),
    [
        ({}, True),
        ({"inline_reads": False}, False),
        ({"database": "postgres://u:p@db:5432/c"}, False),
        ({"blob_store": "s3", "s3_endpoint": "minio:9000"}, False),
    ],
)
def test_tiny_reads_are_inline_only_on_the_embedded_stores(
    values: dict[str, object], inline: bool
) -> None:
    assert serves_inline(load_settings(environ={}, overrides=values)) is inline


def test_a_tiny_read_parsed_on_the_loop_is_kept_for_the_loop_and_others_are_queued() -> None:
    inline = InlineReads()
    inline.loop_thread = threading.get_ident()  # this test's thread plays the loop
    lanes = LaneDispatcher(read_threads=1, threads=1, inline=inline)
    manifest = FakeChannel("GET", "/v2/a/b/manifests/latest")
    catalog = FakeChannel("GET", "/v2/_catalog")
    try:
        lanes.add_task(manifest)
        assert getattr(manifest, "inline_pending", False), "not kept for the loop"
        assert not manifest.started.wait(0.2), "a tiny read on the loop was queued too"
        catalog.release.set()
        lanes.add_task(catalog)  # a small read, but not a tiny one: its lane
        assert catalog.served.wait(5)
        assert not getattr(catalog, "inline_pending", False)
        # The same tiny read re-queued from a task thread (a pipelined request after a
        # long one) goes to the read lane: only the loop serves inline.
        queued = FakeChannel("GET", "/v2/a/b/manifests/latest")
        queued.release.set()
        thread = threading.Thread(target=lanes.add_task, args=(queued,))
        thread.start()
        thread.join()
        assert queued.served.wait(5)
        assert not getattr(queued, "inline_pending", False)
    finally:
        assert lanes.shutdown(cancel_pending=True, timeout=5)


def test_while_the_loop_answers_on_a_channel_its_next_lane_request_waits_for_the_answer() -> None:
    """A pipelined blob GET behind an inline answer must not start on a task thread
    before that answer is sent: both would write the channel's output at once."""
    inline = InlineReads()
    inline.loop_thread = threading.get_ident()
    lanes = LaneDispatcher(read_threads=1, threads=1, inline=inline)
    download = FakeChannel("GET", "/v2/a/b/blobs/sha256:00")
    download.release.set()
    try:
        download.answering = True  # type: ignore[attr-defined]
        lanes.add_task(download)
        assert download.deferred_lane is lanes.others  # type: ignore[attr-defined]
        assert not download.started.wait(0.2), "started before the inline answer was sent"
        download.answering = False  # type: ignore[attr-defined]
        download.deferred_lane = None  # type: ignore[attr-defined]
        lanes.add_task(download)
        assert download.served.wait(5)
    finally:
        assert lanes.shutdown(cancel_pending=True, timeout=5)
