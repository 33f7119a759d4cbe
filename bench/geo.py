"""``python -m bench.geo``: geo-replication between two sites on loopback, in one run.

Every site is a real ``cargohold serve`` (two workers, the embedded default), with its
own data dir; B has A as its peer (``--peer``), and they share ``peer_token``.

- **Shipping.** A's log is made first (``bench.eventlog.generate``, ``--events`` events of
  the realistic mix the replay figures use, with every blob it names in A's blob store:
  1-8 KB each, so that B's fetcher fetches them as it would, not asking A in vain), and
  A serves it. Each repeat starts a fresh
  B, and times, from B's start, until B's log tracks A's head (*shipped*: stored in B's
  log with their tracking), and until B's views hold them too (*folded*). Events/s is the
  count over those times; MB/s is the events' stored bytes (what the log holds, before
  the frames' compression) over the shipping time.
- **Blobs.** A pair of its own, C and then D pulling from it: ``--blobs`` blobs of
  ``--blob-mib`` MiB of incompressible bytes pushed at C under one image before D
  starts; timed from the first page D stores (which queues the blobs it names) until D
  holds every blob (its backlog empty): MB/s over all their bytes.
- **Push to pullable.** On that pair, ``--pushes`` small images pushed at C one after the
  other; for each, the time from the answer to its manifest PUT at C until a GET of the
  tag at D answers 200 (polled every millisecond): p50, p99 and the maximum.

A serves B only once its start-up chores are done (the generated log sealed into its
audit chain). B's progress is read from its own files (the log's tracking row, the views' tracking
row, the blob backlog), read-only, so polling adds no requests to its HTTP lanes.
No registry the project compares with replicates (distribution has no replication;
Quay shares one database; Harbor replicates by policy jobs), so the figures stand
against the issue's targets. Prints the table; writes it to ``docs/benchmarks-geo.md``
(or ``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

from bench.replay import _generate
from bench.servers import REPO_ROOT, BenchError, Registry, cargohold
from bench.v2 import Client, tiny_image

DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks-geo.md"
TOKEN = "bench-geo-peer-token-0123456789"  # noqa: S105 - throwaway sites of the bench
MIB = 1024 * 1024
POLL_S = 0.001
TIMEOUT_S = 1800.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the SQLite file ``path``, opened read-only (none: not made yet)."""
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return list(db.execute(sql).fetchall())
    except sqlite3.OperationalError:
        return []  # a table not created yet


def _number(path: Path, sql: str) -> int:
    rows = _query(path, sql)
    return int(rows[0][0] or 0) if rows else 0


def _shipped(data: Path) -> int:
    """The greatest position of a peer's log that B's log tracks."""
    return _number(
        data / "events.sqlite",
        "SELECT max(notification_id) FROM tracking WHERE application_name LIKE 'peer:%'",
    )


def _stored(data: Path) -> int:
    return _number(data / "events.sqlite", "SELECT count(*) FROM stored_events")


def _folded(data: Path) -> int:
    return _number(data / "views.sqlite", "SELECT position FROM tracking WHERE name = 'registry'")


def _sealed(data: Path) -> int:
    return _number(data / "views.sqlite", "SELECT position FROM audit_seal WHERE name = 'log'")


def _backlog(data: Path) -> int:
    return _number(data / "geo.sqlite", "SELECT count(*) FROM blob_backlog")


def _until(what: str, condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> float:
    """Poll ``condition`` until it holds; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic()


@contextmanager
def _site(name: str, data: Path, root: Path, peer: Registry | None) -> Iterator[Registry]:
    env = {"CARGOHOLD_PEER_TOKEN": TOKEN, "CARGOHOLD_SITE_NAME": name}
    if peer is not None:
        env["CARGOHOLD_PEERS"] = peer.url
    with cargohold(name, name, data, root / f"{name}-work", workers=2, env=env) as served:
        yield served


def _ship(a: Registry, a_data: Path, root: Path, i: int) -> dict[str, float]:
    """A fresh B replicates A's whole log: seconds from B's start until its log tracks
    A's head (``shipped``) and its views hold every event (``folded``); and the events
    shipped per second after the first page landed (B's start-up left out)."""
    head = _stored(a_data)
    b_data = root / f"b{i}"
    started = time.monotonic()
    with _site(f"b{i}", b_data, root, a):
        first = _until("shipping", lambda: _shipped(b_data) > 0)
        first_position = _shipped(b_data)
        shipped = _until("shipping", lambda: _shipped(b_data) >= head)
        folded = _until("folding", lambda: _folded(b_data) >= _stored(b_data) >= head)
    return {
        "shipped": shipped - started,
        "folded": folded - started,
        "rate": (head - first_position) / max(shipped - first, 1e-9),
    }


def _push_blobs(a: Registry, count: int, mib: int) -> None:
    """``count`` blobs of ``mib`` MiB, under one image, at A."""
    with Client(a.url) as client:
        digests = [client.push_blob("bench/blobs", os.urandom(mib * MIB)) for _ in range(count)]
        config_body = b'{"architecture":"amd64","os":"linux"}'
        config = client.push_blob("bench/blobs", config_body)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": len(config_body),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d,
                    "size": mib * MIB,
                }
                for d in digests
            ],
        }
        client.put_manifest("bench/blobs", "big", json.dumps(manifest).encode())


def _blobs_fetched(a_data: Path, b_data: Path) -> float:
    """Seconds from the first page B stored (which queued the blobs it named) until B
    holds every blob A's log names."""
    # NOTE: a page's blobs are queued before the page is stored, so once B's log tracks
    # A's head, an empty backlog means every blob is fetched.
    head = _stored(a_data)
    first = _until("blob shipping", lambda: _shipped(b_data) > 0)
    _until("blob shipping", lambda: _shipped(b_data) >= head)
    return _until("blob fetching", lambda: _backlog(b_data) == 0) - first


def _latencies(a: Registry, b: Registry, pushes: int) -> list[float]:
    """Push-to-pullable seconds of ``pushes`` small images pushed one after another."""
    seconds: list[float] = []
    with Client(a.url) as at_a, Client(b.url) as at_b:
        for n in range(pushes):
            body, _ = tiny_image(at_a, "bench/latency", f"geo-{n}")
            at_a.put_manifest("bench/latency", f"t{n}", body)
            acked = time.monotonic()
            path = f"/v2/bench/latency/manifests/t{n}"
            accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
            while at_b.request("GET", path, headers=accept, expect=(200, 404))[0].status != 200:
                if time.monotonic() - acked > 60:
                    raise BenchError(f"tag t{n} not pullable at B within 60 s")
                time.sleep(POLL_S)
            seconds.append(time.monotonic() - acked)
    return seconds


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(events: int, repeat: int, blobs: int, blob_mib: int, pushes: int, out: Path | None) -> str:
    ship: list[dict[str, float]] = []
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-geo-")))
        a_data = root / "a"
        _log(f"generating {events:,} events at A")
        count = _generate(a_data, events, root, blobs=True)
        state_bytes = _number(
            a_data / "events.sqlite", "SELECT sum(length(state)) FROM stored_events"
        )
        with _site("a", a_data, root, None) as a:
            # A's first start seals the generated log into its audit chain: a chore of
            # its own, left to finish before B reads, so that B's figures are shipping's
            _until("sealing at A", lambda: _sealed(a_data) >= count)
            for i in range(repeat):
                ship.append(_ship(a, a_data, root, i))
                _log(f"  [{i + 1}/{repeat}] {ship[-1]}")
        # NOTE: a pair of its own (sites "c" and "d"), with no generated log.
        a2 = stack.enter_context(_site("c", root / "c", root, None))
        _log(f"blobs: {blobs} x {blob_mib} MiB")
        _push_blobs(a2, blobs, blob_mib)
        b2 = stack.enter_context(_site("d", root / "d", root, a2))
        blob_s = _blobs_fetched(root / "c", root / "d")
        _log(f"  fetched in {blob_s:.2f} s")
        _log(f"push to pullable: {pushes} pushes")
        latencies = _latencies(a2, b2, pushes)
    return _report(
        count,
        state_bytes,
        ship,
        blobs * blob_mib,
        blob_s,
        latencies,
        out,
        (events, repeat, blobs, blob_mib, pushes),
    )


def _report(
    count: int,
    state_bytes: int,
    ship: list[dict[str, float]],
    blob_mib_total: int,
    blob_s: float,
    latencies: list[float],
    out: Path | None,
    args: tuple[int, int, int, int, int],
) -> str:
    shipped = statistics.median(s["shipped"] for s in ship)
    folded = statistics.median(s["folded"] for s in ship)
    rate = statistics.median(s["rate"] for s in ship)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout.strip()
    events, repeat, blobs, blob_mib, pushes = args
    ms = [s * 1000 for s in latencies]
    lines = [
        "# Geo-replication, measured",
        "",
        f"`python -m bench.geo --events {events} --repeat {repeat} --blobs {blobs} "
        f"--blob-mib {blob_mib} --pushes {pushes}` on commit {commit}, {when}, "
        f"{os.cpu_count()} CPUs. Two `cargohold serve` sites (two workers each, the "
        "embedded default) on loopback, B pulling from A. The shipping figures are "
        f"medians of {repeat} fresh B sites over A's log of {count:,} events "
        f"({state_bytes / 1e6:.1f} MB as stored).",
        "",
        "| measurement | cargohold | target |",
        "| --- | --- | --- |",
        f"| events shipped (stored in B's log), events/s, from B's first page | "
        f"{rate:,.0f} | ≥ 20,000 |",
        f"| events shipped, MB/s (as stored), from B's first page | "
        f"{rate * state_bytes / count / 1e6:.1f} | |",
        f"| the whole log shipped, s from B's start (start-up included) | {shipped:.1f} | |",
        f"| the whole log folded into B's views, s from B's start | {folded:.1f} | |",
        f"| blobs fetched by B, MB/s ({blobs} x {blob_mib} MiB) | "
        f"{blob_mib_total * MIB / 1e6 / blob_s:.0f} | |",
        f"| push at A to pullable at B, p50 ms ({pushes} pushes) | {statistics.median(ms):.0f} | |",
        f"| push at A to pullable at B, p99 ms | {_percentile(ms, 0.99):.0f} | < 1,000 |",
        f"| push at A to pullable at B, max ms | {max(ms):.0f} | |",
        "",
        "Raw samples: `"
        + json.dumps(
            {
                "ship": [{k: round(v, 2) for k, v in s.items()} for s in ship],
                "blob_s": round(blob_s, 2),
            }
        )
        + "`",
        "",
    ]
    text = "\n".join(lines)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.geo", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--blobs", type=int, default=8)
    parser.add_argument("--blob-mib", type=int, default=32)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-out", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        print(
            run(
                args.events,
                args.repeat,
                args.blobs,
                args.blob_mib,
                args.pushes,
                None if args.no_out else args.out,
            )
        )
    except BenchError as e:
        print(f"bench.geo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
