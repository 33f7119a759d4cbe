"""The hybrid logical clock: monotonic whatever the wall clock does."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from cargohold.domain.clock import HybridLogicalClock, system_wall_ms
from cargohold.domain.values import HLCTimestamp


class FakeWall:
    def __init__(self, ms: int = 1000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_now_follows_the_wall_clock() -> None:
    wall = FakeWall(1000)
    clock = HybridLogicalClock(wall)
    assert clock.now() == HLCTimestamp(1000, 0)
    wall.ms = 1005
    assert clock.now() == HLCTimestamp(1005, 0)


def test_now_counts_when_the_wall_clock_stalls() -> None:
    clock = HybridLogicalClock(FakeWall(1000))
    assert [clock.now() for _ in range(3)] == [
        HLCTimestamp(1000, 0),
        HLCTimestamp(1000, 1),
        HLCTimestamp(1000, 2),
    ]


def test_now_is_monotonic_when_the_wall_clock_goes_back() -> None:
    wall = FakeWall(1000)
    clock = HybridLogicalClock(wall)
    clock.now()
    wall.ms = 500
    assert clock.now() == HLCTimestamp(1000, 1)
    wall.ms = 1001
    assert clock.now() == HLCTimestamp(1001, 0)


def test_observe_a_remote_ahead_of_us() -> None:
    clock = HybridLogicalClock(FakeWall(1000))
    assert clock.observe(HLCTimestamp(2000, 7)) == HLCTimestamp(2000, 8)
    assert clock.now() == HLCTimestamp(2000, 9)


def test_observe_a_remote_behind_us() -> None:
    wall = FakeWall(1000)
    clock = HybridLogicalClock(wall)
    clock.now()
    assert clock.observe(HLCTimestamp(900, 50)) == HLCTimestamp(1000, 1)
    wall.ms = 3000
    assert clock.observe(HLCTimestamp(900, 50)) == HLCTimestamp(3000, 0)


def test_observe_a_remote_at_our_wall_time() -> None:
    clock = HybridLogicalClock(FakeWall(1000))
    clock.now()
    clock.now()  # (1000, 1)
    assert clock.observe(HLCTimestamp(1000, 5)) == HLCTimestamp(1000, 6)
    assert clock.observe(HLCTimestamp(1000, 2)) == HLCTimestamp(1000, 7)


def test_last() -> None:
    clock = HybridLogicalClock(FakeWall(1000))
    assert clock.last == HLCTimestamp(0, 0)
    reading = clock.now()
    assert clock.last == reading


@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 10_000),  # wall clock reading, jumping back and forth
            st.none() | st.builds(HLCTimestamp, st.integers(0, 10_000), st.integers(0, 100)),
        ),
        max_size=50,
    )
)
def test_readings_strictly_increase_and_dominate_what_was_observed(
    steps: list[tuple[int, HLCTimestamp | None]],
) -> None:
    wall = FakeWall(0)
    clock = HybridLogicalClock(wall)
    previous = HLCTimestamp(-1, 0)
    for ms, remote in steps:
        wall.ms = ms
        reading = clock.now() if remote is None else clock.observe(remote)
        assert reading > previous
        assert reading.wall_ms >= ms
        if remote is not None:
            assert reading > remote
        previous = reading


def test_thread_safe() -> None:
    clock = HybridLogicalClock(FakeWall(1000))
    readings: list[HLCTimestamp] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [clock.now() for _ in range(2000)]
        with lock:
            readings.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(readings)) == len(readings) == 16_000
    assert max(readings) == HLCTimestamp(1000, 15_999)


def test_default_wall_clock_is_epoch_milliseconds() -> None:
    import time

    before = time.time() * 1000
    reading = HybridLogicalClock().now()
    after = time.time() * 1000
    assert before - 1 <= reading.wall_ms <= after + 1
    assert isinstance(system_wall_ms(), int)


def test_a_stamp_far_ahead_moves_the_clock_only_as_far_as_the_bound() -> None:
    clock = HybridLogicalClock(FakeWall(1000))
    reading = clock.observe(HLCTimestamp(10**12, 3), max_ahead_ms=60_000)
    assert reading == HLCTimestamp(61_000, 1) and clock.clamped == 1
    # Within the bound it is the plain receive rule.
    assert clock.observe(HLCTimestamp(60_500, 7), max_ahead_ms=60_000) == HLCTimestamp(61_000, 2)
    assert clock.clamped == 1
