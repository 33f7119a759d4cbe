"""``replay-rebuild``: ``cargohold replay rebuild`` of a log of ``replay_events`` events on
SQLite, in events/s. A cargohold-only row: the reference registries have no log.

The log is generated once per run (``bench.eventlog.generate``: realistic events written
by the domain aggregates in big batches, views caught up) in a data dir of its own under
the run's workdir, in a child process; every repeat then runs ``python -m cargohold.cli
replay rebuild`` on it, a process of its own as an operator runs it (its ~0.5 s of
interpreter start and imports included), and divides the event count it prints by its
wall time. The servers under test are not involved (nor disturbed: their data dirs are
others); the row sits in the first embedded (SQLite) cargohold column.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.servers import REPO_ROOT, BenchError, Registry
from bench.spec import Metric, Target

if TYPE_CHECKING:
    from bench.measurements import Context

REPLAY = Metric(
    "replay-rebuild/rate",
    "replay rebuild of 1,000,000 events (SQLite)",
    "events/s",
    True,
    Target("above", 50_000),
    cargohold_only=True,
)
TIMEOUT = 3 * 3600.0
_REBUILT = re.compile(r"from (\d+) events")


def _env(workdir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "PYTHONPATH": str(REPO_ROOT),
        "CARGOHOLD_AUTH": "off",
        "CARGOHOLD_ADMIN_PASSWORD": "bench-admin-password",
        "TMPDIR": str(workdir),
    }


def _generate(data_dir: Path, n_events: int, workdir: Path, *, blobs: bool = False) -> int:
    """``bench.eventlog.generate(data_dir, n_events, blobs=blobs)`` in a child process;
    its count."""
    code = (
        "import sys; from pathlib import Path; from bench.eventlog import generate; "
        "print(generate(Path(sys.argv[1]), int(sys.argv[2]), blobs=sys.argv[3] == 'blobs'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir), str(n_events), "blobs" if blobs else "-"],
        cwd=REPO_ROOT,
        env=_env(workdir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"generating the event log failed: {done.stderr[-3000:]}")
    try:
        return int(done.stdout.split()[-1])
    except (IndexError, ValueError):
        raise BenchError(f"bench.eventlog.generate printed {done.stdout[-300:]!r}") from None


def prepare_replay(registry: Registry, ctx: Context) -> None:
    """Generate the log once per run (cached in ``ctx.cache``)."""
    if "replay" in ctx.cache:
        return
    data_dir = ctx.workdir / "replay-data"
    started = time.perf_counter()
    events = _generate(data_dir, ctx.profile.replay_events, ctx.workdir)
    seconds = time.perf_counter() - started
    print(
        f"  generated a log of {events:,} events in {seconds:.1f} s ({data_dir})",
        file=sys.stderr,
        flush=True,
    )
    ctx.cache["replay"] = data_dir


def replay_rebuild(registry: Registry, ctx: Context, repeat: int) -> dict[str, float]:
    data_dir: Path = ctx.cache["replay"]
    argv = [sys.executable, "-m", "cargohold.cli", "replay", "rebuild", "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(
        [*argv, "--data-dir", str(data_dir)],
        cwd=ctx.workdir,
        env=_env(ctx.workdir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    seconds = time.perf_counter() - started
    found = _REBUILT.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise BenchError(
            f"cargohold replay rebuild failed ({done.returncode}): "
            f"{done.stdout[-1000:]} {done.stderr[-2000:]}"
        )
    return {REPLAY.key: int(found.group(1)) / seconds}
