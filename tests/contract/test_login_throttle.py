"""The ``LoginThrottle`` contract: one suite, run by every adapter.

``LoginThrottleContract`` holds the tests; an adapter's subclass provides
``make_throttle(clock, **schedule)``. For the SQL adapters every call opens a *new*
database connection over the same database, so a second throttle stands for another worker
process or another node; ``SharedLoginThrottleContract`` adds what only they promise:
instances share their counts, and the table forgets quiet keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.adapters.login_throttle import MemoryLoginThrottle, SQLLoginThrottle
from cargohold.adapters.postgres import PostgresDatabase
from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.config import Settings
from cargohold.domain.credentials import LoginThrottle
from cargohold.domain.ports import Database

# The schedule of every test unless it says otherwise: 5 free, then 1 s doubling to 300 s.
FREE = 5
SCHEDULE = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]


class FakeClock:
    """Wall-clock seconds that move only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fail(throttle: LoginThrottle, times: int, account: str, address: str) -> None:
    for _ in range(times):
        throttle.failed(account, address)


def hammer_concurrently(
    throttles: list[LoginThrottle], per_thread: int, account: str, address: str
) -> None:
    """``failed`` from one thread per throttle, all released at once."""
    barrier = threading.Barrier(len(throttles))
    errors: list[BaseException] = []

    def run(throttle: LoginThrottle) -> None:
        try:
            barrier.wait(timeout=30)
            fail(throttle, per_thread, account, address)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in throttles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


class LoginThrottleContract:
    """Every ``LoginThrottle`` adapter must pass these."""

    def make_throttle(self, clock: Callable[[], float], **schedule: Any) -> LoginThrottle:
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def throttle(self, clock: FakeClock) -> LoginThrottle:
        return self.make_throttle(clock)

    def test_a_fresh_throttle_is_free(self, throttle: LoginThrottle) -> None:
        assert throttle.check("alice", "10.0.0.1") == 0.0
        assert throttle.check("", "") == 0.0
        assert throttle.check("bob", "2001:db8::1") == 0.0

    def test_check_is_not_an_attempt(self, throttle: LoginThrottle) -> None:
        for _ in range(50):
            assert throttle.check("alice", "10.0.0.1") == 0.0
        fail(throttle, FREE, "alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == 0.0

        throttle.failed("alice", "10.0.0.1")

        assert throttle.check("alice", "10.0.0.1") == 1.0

    def test_free_failures_then_doubling_to_the_cap(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        for _ in range(FREE):
            assert throttle.check("alice", "10.0.0.1") == 0.0
            throttle.failed("alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == 0.0

        for delay in SCHEDULE:
            throttle.failed("alice", "10.0.0.1")
            assert throttle.check("alice", "10.0.0.1") == delay
            clock.advance(delay / 2)
            assert throttle.check("alice", "10.0.0.1") == delay / 2
            clock.advance(delay / 2)
            assert throttle.check("alice", "10.0.0.1") == 0.0

    def test_the_schedule_parameters_are_honoured(self, clock: FakeClock) -> None:
        throttle = self.make_throttle(clock, free_failures=2, base_delay=0.5, max_delay=3.0)
        fail(throttle, 2, "alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == 0.0

        seen = []
        for _ in range(5):
            throttle.failed("alice", "10.0.0.1")
            seen.append(throttle.check("alice", "10.0.0.1"))

        assert seen == [0.5, 1.0, 2.0, 3.0, 3.0]

    def test_huge_failure_counts_stay_at_the_cap(self, throttle: LoginThrottle) -> None:
        fail(throttle, 200, "alice", "10.0.0.1")

        assert throttle.check("alice", "10.0.0.1") == 300.0

    def test_account_and_address_are_throttled_independently(self, throttle: LoginThrottle) -> None:
        for i in range(FREE + 1):  # one address sprays six accounts
            throttle.failed(f"user{i}", "10.0.0.1")
        assert throttle.check("someone-else", "10.0.0.1") == 1.0
        assert throttle.check("user0", "10.0.0.2") == 0.0

        for i in range(FREE + 1):  # six addresses hammer one account
            throttle.failed("bob", f"192.0.2.{i}")
        assert throttle.check("bob", "198.51.100.7") == 1.0
        assert throttle.check("carol", "192.0.2.0") == 0.0

    def test_an_account_and_an_address_with_the_same_name_are_distinct(
        self, throttle: LoginThrottle
    ) -> None:
        fail(throttle, FREE + 1, "10.0.0.1", "198.51.100.7")

        assert throttle.check("10.0.0.1", "192.0.2.1") == 1.0
        assert throttle.check("alice", "10.0.0.1") == 0.0

    def test_the_larger_of_the_two_delays_applies(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        for i in range(FREE + 3):  # the account earns 4 s
            throttle.failed("alice", f"192.0.2.{i}")
        assert throttle.check("alice", "10.0.0.9") == 4.0

        clock.advance(3.0)
        for i in range(FREE + 2):  # the address earns 2 s, and now outlasts the account
            throttle.failed(f"user{i}", "10.0.0.9")

        assert throttle.check("alice", "198.51.100.7") == 1.0
        assert throttle.check("nobody", "10.0.0.9") == 2.0
        assert throttle.check("alice", "10.0.0.9") == 2.0

    def test_success_forgets_the_account_and_the_address(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        fail(throttle, FREE + 3, "alice", "10.0.0.1")
        fail(throttle, FREE + 1, "bob", "10.0.0.2")
        assert throttle.check("alice", "10.0.0.1") == 4.0

        throttle.succeeded("alice", "10.0.0.1")

        assert throttle.check("alice", "10.0.0.1") == 0.0
        assert throttle.check("alice", "198.51.100.7") == 0.0
        assert throttle.check("carol", "10.0.0.1") == 0.0
        assert throttle.check("bob", "10.0.0.2") == 1.0  # others keep their failures
        fail(throttle, FREE, "alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == 0.0  # the free failures are back

    def test_success_without_failures_is_harmless(self, throttle: LoginThrottle) -> None:
        throttle.succeeded("alice", "10.0.0.1")
        throttle.succeeded("alice", "10.0.0.1")

        fail(throttle, FREE + 1, "alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == 1.0

    def test_delays_expire_with_the_clock_but_the_count_stays(
        self, throttle: LoginThrottle, clock: FakeClock
    ) -> None:
        fail(throttle, FREE + 2, "alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == 2.0

        clock.advance(1.5)
        assert throttle.check("alice", "10.0.0.1") == 0.5
        clock.advance(0.5)
        assert throttle.check("alice", "10.0.0.1") == 0.0
        clock.advance(250.0)
        assert throttle.check("alice", "10.0.0.1") == 0.0

        throttle.failed("alice", "10.0.0.1")  # the next failure still doubles
        assert throttle.check("alice", "10.0.0.1") == 4.0

    def test_concurrent_failures_are_all_counted(self, clock: FakeClock) -> None:
        # 2**-30 s doubling from the first failure: 32 failures make exactly 2 s, and a
        # single lost update would show as 1 s.
        throttle = self.make_throttle(clock, free_failures=0, base_delay=2.0**-30)

        hammer_concurrently([throttle] * 8, 4, "alice", "10.0.0.1")

        assert throttle.check("alice", "198.51.100.7") == 2.0
        assert throttle.check("bob", "10.0.0.1") == 2.0


class TestMemoryLoginThrottle(LoginThrottleContract):
    def make_throttle(self, clock: Callable[[], float], **schedule: Any) -> LoginThrottle:
        return MemoryLoginThrottle(clock, **schedule)

    def test_instances_do_not_share_state(self, clock: FakeClock) -> None:
        first, second = self.make_throttle(clock), self.make_throttle(clock)

        fail(first, FREE + 1, "alice", "10.0.0.1")

        assert first.check("alice", "10.0.0.1") == 1.0
        assert second.check("alice", "10.0.0.1") == 0.0


class SharedLoginThrottleContract(LoginThrottleContract):
    """What ``SQLLoginThrottle`` adds: one table for every process and node."""

    databases: list[Database]

    def open_database(self) -> Database:
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _close_databases(self) -> Iterator[None]:
        self.databases = []
        yield
        for db in self.databases:
            db.close()

    def make_throttle(self, clock: Callable[[], float], **schedule: Any) -> SQLLoginThrottle:
        # A new connection (or pool) per throttle: another worker or node.
        db = self.open_database()
        self.databases.append(db)
        throttle = SQLLoginThrottle(db, clock, **schedule)
        throttle.create_table()
        return throttle

    def test_instances_on_one_database_share_state(self, clock: FakeClock) -> None:
        first, second = self.make_throttle(clock), self.make_throttle(clock)

        fail(first, 3, "alice", "10.0.0.1")
        fail(second, 3, "alice", "10.0.0.1")

        assert first.check("alice", "10.0.0.1") == 1.0
        assert second.check("alice", "10.0.0.1") == 1.0
        second.succeeded("alice", "10.0.0.1")
        assert first.check("alice", "10.0.0.1") == 0.0

    def test_concurrent_failures_from_many_instances_are_all_counted(
        self, clock: FakeClock
    ) -> None:
        throttles: list[LoginThrottle] = [
            self.make_throttle(clock, free_failures=0, base_delay=2.0**-30) for _ in range(8)
        ]

        hammer_concurrently(throttles, 4, "alice", "10.0.0.1")

        assert throttles[0].check("alice", "198.51.100.7") == 2.0
        assert throttles[-1].check("bob", "10.0.0.1") == 2.0

    def test_create_table_again_keeps_the_counts(self, clock: FakeClock) -> None:
        throttle = self.make_throttle(clock)
        fail(throttle, FREE + 1, "alice", "10.0.0.1")

        throttle.create_table()

        assert throttle.check("alice", "10.0.0.1") == 1.0

    def test_quiet_keys_are_forgotten_and_the_table_stays_bounded(self, clock: FakeClock) -> None:
        throttle = self.make_throttle(clock, max_delay=300.0, forget_after=600.0)
        fail(throttle, FREE + 2, "alice", "10.0.0.1")
        clock.advance(500.0)
        throttle.failed("bob", "10.0.0.2")
        assert throttle.tracked() == (2, 2)

        clock.advance(101.0)  # alice's last failure is now more than 600 s old
        throttle.failed("carol", "10.0.0.3")

        assert throttle.tracked() == (2, 2)  # bob and carol; alice was pruned
        throttle.failed("alice", "10.0.0.1")
        fail(throttle, FREE - 1, "alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == 0.0  # counting from zero again

    def test_many_keys_do_not_accumulate(self, clock: FakeClock) -> None:
        throttle = self.make_throttle(clock, max_delay=300.0, forget_after=300.0)
        for i in range(200):
            throttle.failed(f"user{i}", f"192.0.2.{i}")
            clock.advance(10.0)

        # Only the failures of the last 300 s are still tracked.
        assert throttle.tracked() == (31, 31)

    def test_prune_deletes_only_quiet_keys(self, clock: FakeClock) -> None:
        throttle = self.make_throttle(clock, forget_after=600.0)
        throttle.failed("alice", "10.0.0.1")
        clock.advance(300.0)
        throttle.failed("bob", "10.0.0.2")
        clock.advance(301.0)

        assert throttle.prune() == 2
        assert throttle.tracked() == (1, 1)
        assert throttle.prune() == 0

    def test_forget_after_must_outlast_the_longest_delay(self) -> None:
        with pytest.raises(ValueError, match="forget_after"):
            self.make_throttle(FakeClock(), max_delay=300.0, forget_after=299.0)

    def test_a_clock_running_ahead_cannot_lock_out_for_longer_than_the_delay(self) -> None:
        ahead, behind = FakeClock(1_700_001_000.0), FakeClock(1_700_000_000.0)
        fast, slow = self.make_throttle(ahead), self.make_throttle(behind)

        fail(fast, FREE + 1, "alice", "10.0.0.1")
        assert slow.check("alice", "10.0.0.1") == 1.0  # not 1001 s

        slow.failed("alice", "10.0.0.1")  # counts, but does not move the last failure back
        assert fast.check("alice", "10.0.0.1") == 2.0

    def test_the_default_clock_is_wall_time(self) -> None:
        db = self.open_database()
        self.databases.append(db)
        throttle = SQLLoginThrottle(db)
        throttle.create_table()

        fail(throttle, FREE + 3, "alice", "10.0.0.1")

        # Another host reads the row against its own wall clock: 4 s less a moment.
        assert 3.0 < self.make_throttle(time.time).check("alice", "x") <= 4.0


class TestSQLiteLoginThrottle(SharedLoginThrottleContract):
    @pytest.fixture(autouse=True)
    def _path(self, tmp_path: Path) -> None:
        self.path = tmp_path / "views.sqlite"

    def open_database(self) -> Database:
        return SQLiteDatabase(self.path)


@pytest.mark.postgres
class TestPostgresLoginThrottle(SharedLoginThrottleContract):
    @pytest.fixture(autouse=True)
    def _url(self, postgres_url: str) -> None:
        self.settings = Settings(database=postgres_url).postgres

    def open_database(self) -> Database:
        return PostgresDatabase(self.settings, pool_size=2)
