"""``python -m bench.profile NAME...``: one measurement on cargohold alone, under py-spy.

For a target that is missed: starts ``cargohold serve --workers N`` on a throwaway data
dir (or, with ``--backend postgres``, on PostgreSQL and MinIO started for it), loads
what the measurement needs (the same content as ``python -m bench``), runs it
``--repeat`` times while ``py-spy record`` samples the server and its workers, then
prints where the samples fell: the functions with the most samples on top of the stack
(self) and anywhere in it (inclusive). The raw collapsed stacks (and, with ``--svg``, a
flame graph) are kept in ``--out``. py-spy comes from PyPI (``pip install py-spy``) and
needs ptrace rights (root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench import populate
from bench.content import make_blob
from bench.loadgen import resolve_loader
from bench.measurements import (
    BIG,
    CATALOG_CONTENT,
    MEASUREMENTS,
    NAMES,
    TAGS,
    Context,
    Measurement,
)
from bench.servers import BenchError, Registry, cargohold
from bench.spec import FULL, QUICK

TOP = 25


def _py_spy() -> str:
    found = shutil.which("py-spy")
    if found is None:
        raise BenchError("py-spy is not installed (pip install py-spy)")
    return found


def _record(
    binary: str, pid: int, output: Path, fmt: str, rate: int, gil: bool
) -> subprocess.Popen[bytes]:
    argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--rate", str(rate)]
    argv += ["--format", fmt, "--output", str(output), *(["--gil"] if gil else [])]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches to every process of the tree before sampling
    if process.poll() is not None:
        assert process.stderr is not None
        raise BenchError(f"py-spy failed: {process.stderr.read().decode(errors='replace')}")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _frame(raw: str) -> str:
    """``handle (waitress/channel.py:432)`` -> ``handle (waitress/channel.py)``; frames
    of one function on different lines count as one."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", "/work/", "/cargohold/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if where else name


def summarize(collapsed: Path, top: int = TOP) -> str:
    """Self and inclusive sample shares of the functions in py-spy's raw output."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return "no samples\n"
    lines = [f"{total} samples", "", "self:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in self_counts.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def _profile(
    measurement: Measurement, registry: Registry, ctx: Context, out: Path, args: argparse.Namespace
) -> None:
    binary = _py_spy()
    measurement.prepare(registry, ctx)
    suffix = ("-pg" if args.backend == "postgres" else "") + ("-gil" if args.gil else "")
    raw = out / f"{measurement.name}-w{args.workers}{suffix}.txt"
    recorders = [_record(binary, registry.pid, raw, "raw", args.rate, args.gil)]
    if args.svg:
        svg = raw.with_suffix(".svg")
        recorders.append(_record(binary, registry.pid, svg, "flamegraph", args.rate, args.gil))
    try:
        for repeat in range(ctx.profile.repeat):
            values = measurement.run(registry, ctx, repeat)
            shown = ", ".join(f"{k} {v:,.2f}" for k, v in values.items())
            print(f"  [{repeat + 1}/{ctx.profile.repeat}] {shown}", file=sys.stderr)
    finally:
        for recorder in recorders:
            _stop(recorder)
    what = "samples holding the GIL" if args.gil else "all samples of busy threads"
    backend = "PostgreSQL + MinIO" if args.backend == "postgres" else "SQLite + filesystem"
    title = f"{measurement.name}, cargohold --workers {args.workers} on {backend}"
    print(f"## {title}, {what} ({raw})\n")
    print(summarize(raw))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("names", nargs="+", choices=NAMES, metavar="NAME")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the embedded default, or PostgreSQL + MinIO (as the cargohold-pg column)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the smoke's tiny sizes")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--svg", action="store_true", help="also record a flame graph")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples holding the GIL (where the CPU goes, not where threads wait)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-profiles"))
    args = parser.parse_args(argv)
    profile = dataclasses.replace(QUICK if args.quick else FULL, repeat=args.repeat)
    selected = [m for m in MEASUREMENTS if m.name in args.names]
    needs: set[str] = set().union(*(m.needs for m in selected))
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cargohold-profile-"))
    try:
        with ExitStack() as stack:
            env: dict[str, str] = {}
            blobs: tuple[Path, ...] | None = None  # None: in the data dir
            if args.backend == "postgres":
                from bench.services import postgres_and_minio

                env, s3_data = stack.enter_context(postgres_and_minio(workdir))
                blobs = (s3_data,)  # where huge-push-rss frees its blob
            registry = stack.enter_context(
                cargohold(
                    "cargohold",
                    f"cargohold, {args.workers} workers",
                    workdir / "data",
                    workdir,
                    workers=args.workers,
                    env=env,
                    data_roots=blobs,
                )
            )
            image = populate.push_image(registry.url)
            if TAGS in needs:
                populate.push_tags(registry.url, image, profile.tags)
            if CATALOG_CONTENT in needs:
                populate.push_catalog(registry.url, image, profile.repositories)
            big = make_blob(profile.big_blob, seed=1) if BIG in needs else None
            if big is not None:
                populate.push_big(registry.url, big)
            ctx = Context(
                profile,
                resolve_loader("auto"),
                image,
                big,
                {registry.key: args.workers},
                workdir=workdir / "scratch",
            )
            for measurement in selected:
                _profile(measurement, registry, ctx, args.out, args)
        return 0
    except BenchError as e:
        print(f"python -m bench.profile: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
