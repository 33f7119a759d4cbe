"""``python -m bench``: cargohold beside the reference registry, in one run.

Starts the registries chosen with ``--servers`` (all by default): the reference registry
(Debian's ``docker-registry``, distribution 2.8), distribution v3 (built by
``scripts/install-test-services``), cargohold on the embedded default (SQLite +
filesystem) twice, with ``--workers 1`` and ``--workers 2`` on one shared data dir, and
cargohold ``--workers 2`` on PostgreSQL + MinIO (both started as the test suite starts
them), each on a free 127.0.0.1 port, with throwaway data under a temporary directory. A
chosen registry that is not installed is an error, never a silent skip. Loads the same
content into each (``bench.populate``), then runs every measurement ``--repeat`` times,
interleaved: each repeat runs it once on each registry, in an order rotated by one every
repeat. Prints the table; writes it into ``docs/benchmarks.md`` (a full run by default,
or wherever ``--out`` says).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import populate
from bench.content import Blob, make_blob
from bench.loadgen import LOADERS, resolve_loader, wrk_binary
from bench.measurements import (
    ALL_METRICS,
    BIG,
    CATALOG_CONTENT,
    LOADS,
    MEASUREMENTS,
    NAMES,
    RSS_LOAD,
    SLOW,
    TAGS,
    Context,
    Measurement,
)
from bench.populate import Image
from bench.report import (
    Column,
    Samples,
    load_average,
    loading_table,
    machine,
    section,
    table,
    write_page,
)
from bench.servers import FLAVOURS, REPO_ROOT, BenchError, Registry, cargohold, reference
from bench.spec import FULL, QUICK, Profile

DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
# The columns, in table order: the references first (the first chosen is the ratios' base).
SERVERS = ("reference", "reference-v3", "cargohold-1", "cargohold-2", "cargohold-pg")
SERVER_HELP = {
    "reference": "distribution 2.8 (Debian's docker-registry)",
    "reference-v3": "distribution v3 (built by scripts/install-test-services)",
    "cargohold-1": "embedded default, 1 worker",
    "cargohold-2": "embedded default, 2 workers (the data dir of cargohold-1)",
    "cargohold-pg": "PostgreSQL + MinIO, 2 workers",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark cargohold side by side with the reference registry.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and 2 repeats (the CI smoke)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"write the table into this page (default: {DEFAULT_OUT.relative_to(REPO_ROOT)} "
        "for a full run of every measurement on every server; nothing for --quick, --only, "
        "--skip, --skip-slow or fewer --servers)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=NAMES, metavar="NAME", help=f"one of {', '.join(NAMES)}"
    )
    parser.add_argument(
        "--skip", nargs="+", choices=NAMES, default=[], metavar="NAME", help="leave these out"
    )
    parser.add_argument(
        "--skip-slow",
        action="store_true",
        help=f"leave out the slowest measurements ({', '.join(SLOW)})",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=SERVERS,
        default=list(SERVERS),
        metavar="NAME",
        help="the columns (default: all): "
        + "; ".join(f"{k}: {v}" for k, v in SERVER_HELP.items()),
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also run cargohold from another checkout of the repository (say, a git "
        "worktree of an earlier commit) as the column cargohold-base: embedded default, "
        "2 workers, a data dir of its own; to see what a change does, in one run",
    )
    parser.add_argument("--repeat", type=int, help="repeats per measurement (default 5)")
    parser.add_argument(
        "--loader",
        choices=LOADERS,
        default="auto",
        help="request load generator (auto: wrk when installed, else Python processes)",
    )
    parser.add_argument("--json", type=Path, help="also write every sample as JSON here")
    parser.add_argument("--workdir", type=Path, help="where the throwaway data goes")
    parser.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(phases: dict[str, float], phase: str, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    phases[phase] = time.perf_counter() - started


def _load_content(
    registry: Registry, needs: set[str], profile: Profile, big: Blob | None
) -> tuple[Image, dict[str, float]]:
    """Push the content ``needs`` into ``registry``; the image and each phase's seconds."""
    phases: dict[str, float] = {}
    image = populate.push_image(registry.url)
    if TAGS in needs:
        _log(f"  {registry.label}: {profile.tags:,} tags")
        _timed(phases, TAGS, lambda: populate.push_tags(registry.url, image, profile.tags))
    if CATALOG_CONTENT in needs:
        _log(f"  {registry.label}: {profile.repositories:,} repositories")
        _timed(
            phases,
            CATALOG_CONTENT,
            lambda: populate.push_catalog(registry.url, image, profile.repositories),
        )
    if big is not None:
        _log(f"  {registry.label}: a {big.size >> 20} MiB blob")
        _timed(phases, BIG, lambda: populate.push_big(registry.url, big))
    return image, phases


def _run(selected: Sequence[Measurement], registries: Sequence[Registry], ctx: Context) -> Samples:
    samples: Samples = {}
    for measurement in selected:
        targets = [r for r in registries if measurement.applies(r)]
        if measurement.once:
            targets = targets[:1]
        if not targets:
            _log(f"{measurement.name}: none of the chosen servers runs it; left out")
            continue
        repeats = ctx.profile.repeat
        if measurement.max_repeat is not None:
            repeats = min(repeats, measurement.max_repeat)
        _log(f"{measurement.name}:")
        for registry in targets:
            measurement.prepare(registry, ctx)
        for repeat in range(repeats):
            shift = repeat % len(targets)
            for registry in [*targets[shift:], *targets[:shift]]:
                values = measurement.run(registry, ctx, repeat)
                for key, value in values.items():
                    samples.setdefault(key, {}).setdefault(registry.key, []).append(value)
                shown = ", ".join(f"{k.split('/')[1]} {v:,.2f}" for k, v in values.items())
                _log(f"  [{repeat + 1}/{repeats}] {registry.label}: {shown}")
    if LOADS & {m.name for m in selected}:
        for (key, _), peak in sorted(ctx.rss_peaks.items()):
            samples.setdefault(RSS_LOAD.key, {}).setdefault(key, []).append(peak)
    return samples


def _start(
    stack: ExitStack, names: Sequence[str], workdir: Path, baseline: Path | None = None
) -> list[Registry]:
    """Start the chosen servers (and PostgreSQL + MinIO for cargohold-pg), in table order,
    and cargohold from the ``baseline`` checkout last."""
    registries: list[Registry] = []
    data = workdir / "cargohold-data"
    for name in SERVERS:
        if name not in names:
            continue
        if name == "reference":
            label = f"reference ({FLAVOURS['2.8']})"
            registries.append(stack.enter_context(reference(name, label, workdir / name)))
        elif name == "reference-v3":
            label = f"reference ({FLAVOURS['v3']})"
            registries.append(
                stack.enter_context(reference(name, label, workdir / name, flavour="v3"))
            )
        elif name in {"cargohold-1", "cargohold-2"}:
            workers = int(name[-1])
            label = f"cargohold, {workers} worker{'s' if workers > 1 else ''}"
            registries.append(
                stack.enter_context(
                    cargohold(
                        name,
                        label,
                        data,
                        workdir / name,
                        workers=workers,
                        group="cargohold-sqlite",
                    )
                )
            )
        else:
            from bench.services import postgres_and_minio

            _log("  starting PostgreSQL and MinIO for cargohold-pg")
            env, s3_data = stack.enter_context(postgres_and_minio(workdir))
            registries.append(
                stack.enter_context(
                    cargohold(
                        name,
                        "cargohold on PostgreSQL + MinIO, 2 workers",
                        workdir / "cargohold-pg-data",
                        workdir / name,
                        workers=2,
                        env=env,
                        data_roots=(s3_data,),
                    )
                )
            )
    if baseline is not None:
        registries.append(stack.enter_context(_baseline(baseline, workdir)))
    return registries


def _baseline(checkout: Path, workdir: Path) -> Any:
    """cargohold from ``checkout`` (its code first on ``PYTHONPATH``), 2 workers."""
    if not (checkout / "cargohold" / "cli.py").is_file():
        raise BenchError(f"--baseline {checkout}: not a checkout of cargohold")
    revision = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    name = "cargohold-base"
    return cargohold(
        name,
        f"cargohold at {revision or checkout}, 2 workers",
        workdir / f"{name}-data",
        workdir / name,
        workers=2,
        group=name,
        env={"PYTHONPATH": str(checkout.resolve())},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profile = QUICK if args.quick else FULL
    if args.repeat is not None:
        if args.repeat < 1:
            print("python -m bench: --repeat must be at least 1", file=sys.stderr)
            return 2
        profile = dataclasses.replace(profile, repeat=args.repeat)
    skipped = set(args.skip) | (set(SLOW) if args.skip_slow else set())
    selected = [
        m for m in MEASUREMENTS if (not args.only or m.name in args.only) and m.name not in skipped
    ]
    needs: set[str] = set().union(*(m.needs for m in selected))
    out = args.out
    if not any(name.startswith("cargohold") for name in args.servers):
        print("python -m bench: --servers needs at least one cargohold", file=sys.stderr)
        return 2
    full = not skipped and set(args.servers) == set(SERVERS)
    if out is None and not args.quick and not args.only and full:
        out = DEFAULT_OUT
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cargohold-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.perf_counter()
    load_before = load_average()
    try:
        loader = resolve_loader(args.loader)
        loader_text = (
            f"wrk ({wrk_binary()}), 2 threads; HEAD loads: Python, one process per core"
            if loader == "wrk"
            else "Python, one process per core (asyncio connections)"
        )
        with ExitStack() as stack:
            _log(f"starting the registries (data under {workdir})")
            registries = _start(stack, args.servers, workdir, args.baseline)
            _log("loading content")
            big = make_blob(profile.big_blob, seed=1) if BIG in needs else None
            loading: dict[str, dict[str, float]] = {}
            images = {}
            loaders: list[Registry] = []
            # Registries of one group share a data dir: load it once, through the first.
            for registry in registries:
                if any(r.group == registry.group for r in loaders):
                    continue
                loaders.append(registry)
                images[registry.key], loading[registry.key] = _load_content(
                    registry, needs, profile, big
                )
            if len({image.digest for image in images.values()}) != 1:
                raise BenchError("the registries hold different images")
            ctx = Context(
                profile=profile,
                loader=loader,
                image=next(iter(images.values())),
                big=big,
                workers={r.key: r.workers for r in registries},
                workdir=workdir,
            )
            samples = _run(selected, registries, ctx)
        load_after = load_average()
        columns = [Column(r.key, r.label, r.workers, r.backend) for r in registries]
        references = [c for c in columns if c.workers == 0]
        cargoholds = [c for c in columns if c.workers > 0]
        table_text, misses = table(ALL_METRICS, samples, references, cargoholds)
        wall = time.perf_counter() - started
        generated = section(
            profile=profile,
            table_text=table_text,
            misses=misses,
            machine_rows=machine(loader_text, load_before, load_after, args.servers),
            started=started_at,
            wall_seconds=wall,
            loading=loading_table(profile, loading, loaders),
            command=command,
        )
        print(generated)
        if out is not None:
            write_page(out, generated)
            _log(f"wrote {out}")
        if args.json is not None:
            args.json.write_text(
                json.dumps(
                    {
                        "profile": dataclasses.asdict(profile),
                        "samples": samples,
                        "medians": {
                            k: {r: statistics.median(v) for r, v in by.items()}
                            for k, by in samples.items()
                        },
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
        return 0
    except BenchError as e:
        print(f"python -m bench: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
