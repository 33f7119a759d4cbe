"""The serving lanes: small reads are never queued behind a long request."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from cargohold.http.serve import LaneDispatcher, _is_quick_read


@dataclass
class FakeRequest:
    command: str
    path: str


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
