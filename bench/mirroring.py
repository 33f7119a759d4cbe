"""``python -m bench.mirroring``: repository mirroring beside ``skopeo sync``, and a cache
hit beside a local pull, on one machine in one run.

The upstream is the reference registry (Debian's ``docker-registry``, distribution 2.8)
holding ``bench/small`` (``--tags`` distinct tiny images, a config and a small layer each)
and ``bench/big`` (one image whose layer is ``--big-mib`` MiB of incompressible bytes).

Each repeat, interleaved (the order swaps every repeat):

- **skopeo sync** copies both repositories, every tag, into a fresh reference registry
  (``skopeo sync --src docker --dest docker``, as a Quay or Harbor operator mirrors
  without them);
- **cargohold** copies the same into a fresh data dir: two mirrors (``v*``-less globs:
  ``*``) configured beforehand (not timed), then ``cargohold mirror run-once`` (a process
  of its own, as skopeo is), timed from its start to its exit, its peak RSS sampled.

Then, on the last repeat's data dir, one ``cargohold serve`` holds both the mirrored
repositories (local) and a pull-through cache organisation of the same upstream, primed
by one pull; it measures, interleaved, a manifest GET by tag (requests/s over one
keep-alive connection) and a GET of the big layer (MiB/s), from the cache and from the
local repository.

Prints a table and writes it to ``docs/benchmarks-mirroring.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.content import make_blob
from bench.populate import push_big
from bench.servers import REPO_ROOT, BenchError, RssSampler, cargohold, reference
from bench.v2 import Client, tiny_image

DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks-mirroring.md"
SMALL, BIG = "bench/small", "bench/big"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"
MIB = 1024 * 1024
X = "\N{MULTIPLICATION SIGN}"


def _skopeo() -> str:
    found = shutil.which("skopeo")
    if found is None:
        raise BenchError("skopeo is not installed (apt-get install skopeo)")
    return found


def _populate(url: str, tags: int, big_mib: int) -> None:
    with Client(url) as client:
        for i in range(tags):
            manifest, _ = tiny_image(client, SMALL, f"mirror-{i}")
            client.put_manifest(SMALL, f"t{i:04d}", manifest)
    push_big(url, make_blob(big_mib * MIB, seed=7))


def _skopeo_sync(source: str, workdir: Path) -> float:
    """Seconds for ``skopeo sync`` of both repositories into a fresh reference registry."""
    with reference("dest", "destination", workdir) as dest:
        started = time.monotonic()
        for repo in (SMALL, BIG):
            subprocess.run(
                [
                    _skopeo(),
                    "sync",
                    "--src",
                    "docker",
                    "--dest",
                    "docker",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"{source}/{repo}",
                    f"{dest.host}/mirror",
                ],
                check=True,
                capture_output=True,
            )
        return time.monotonic() - started


def _prepare_mirrors(data: Path, upstream: str) -> None:
    """Two mirrors of the upstream's repositories (and a cache organisation of it) in a
    fresh data dir: set up in-process, not timed."""
    from cargohold.bootstrap import bootstrap, ensure_admin
    from cargohold.commands.mirrors import MirrorInput
    from cargohold.commands.proxy_caches import ProxyCacheInput
    from cargohold.commands.unit_of_work import Caller
    from cargohold.config import load_settings
    from cargohold.domain.identity import AccountName, RobotShortName
    from cargohold.domain.values import Actor, RepositoryName

    system = Caller(Actor.system(), "bench")
    settings = load_settings(
        environ={}, overrides={"data_dir": data, "admin_password": "bench-admin-password"}
    )
    c = bootstrap(settings)
    try:
        ensure_admin(c)
        org = AccountName("acme")
        c.identity.create_organization(org, AccountName("admin"), system)
        c.identity.create_robot(org, RobotShortName("mirror"), system)
        for repo in (SMALL, BIG):
            name = RepositoryName(f"acme/{repo.split('/')[1]}")
            c.registry.create_repository(name, system)
            c.mirrors.configure(
                name,
                MirrorInput(
                    external_reference=f"{upstream}/{repo}",
                    sync_interval_s=86400,
                    sync_start_ms=0,
                    robot="acme+mirror",
                    tag_globs=("*",),
                    verify_tls=False,
                ),
                system,
            )
        c.identity.create_organization(AccountName("cache"), AccountName("admin"), system)
        c.proxy_caches.configure("cache", ProxyCacheInput(upstream, insecure=True), system)
    finally:
        c.close()


def _cargohold_sync(upstream: str, data: Path) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of ``cargohold mirror run-once`` over both mirrors."""
    _prepare_mirrors(data, upstream)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    argv = [sys.executable, "-m", "cargohold.cli", "mirror", "run-once", "--data-dir", str(data)]
    started = time.monotonic()
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        sampler = RssSampler(p.pid, interval=0.05)
        with sampler.running():
            out, err = p.communicate()
    elapsed = time.monotonic() - started
    if p.returncode != 0 or b"2 mirror syncs ran" not in out:
        raise BenchError(f"mirror run-once failed: {out.decode()} {err.decode()}")
    return elapsed, sampler.peak


def _manifest_rate(url: str, repo: str, seconds: float) -> float:
    with httpx.Client(base_url=url, headers={"Accept": ACCEPT}) as http:
        path = f"/v2/{repo}/manifests/t0000"
        http.get(path).raise_for_status()
        count, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            http.get(path).raise_for_status()
            count += 1
        return count / (time.monotonic() - started)


def _blob_rate(url: str, repo: str, digest: str) -> float:
    with httpx.Client(base_url=url, timeout=120.0) as http:
        started, size = time.monotonic(), 0
        with http.stream("GET", f"/v2/{repo}/blobs/{digest}") as r:
            r.raise_for_status()
            for chunk in r.iter_raw(MIB):
                size += len(chunk)
        return size / MIB / (time.monotonic() - started)


def _big_layer(url: str) -> str:
    with httpx.Client(base_url=url, headers={"Accept": ACCEPT}) as http:
        r = http.get(f"/v2/{BIG}/manifests/latest")
        r.raise_for_status()
        digest: str = r.json()["layers"][0]["digest"]
        return digest


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run(tags: int, big_mib: int, repeat: int, out: Path) -> str:
    results: dict[str, list[float]] = {
        "skopeo": [],
        "cargohold": [],
        "rss": [],
        "cache_manifest": [],
        "local_manifest": [],
        "cache_blob": [],
        "local_blob": [],
    }
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mirror-")))
        upstream = stack.enter_context(reference("upstream", "upstream", root / "upstream"))
        _populate(upstream.url, tags, big_mib)
        data = root / "none"
        for i in range(repeat):
            order: list[Callable[[], None]] = []

            def skopeo(i: int = i) -> None:
                results["skopeo"].append(_skopeo_sync(upstream.host, root / f"dest{i}"))
                shutil.rmtree(root / f"dest{i}")

            def ours(i: int = i) -> None:
                nonlocal data
                if data.exists():
                    shutil.rmtree(data)
                data = root / f"cargohold{i}"
                seconds, rss = _cargohold_sync(upstream.host, data)
                results["cargohold"].append(seconds)
                results["rss"].append(rss / MIB)

            order = [skopeo, ours] if i % 2 == 0 else [ours, skopeo]
            for step in order:
                step()
        layer = _big_layer(upstream.url)
        served = stack.enter_context(
            cargohold("serve", "cargohold", data, root / "serve", workers=2)
        )
        # Prime the cache: the tag and the big layer, as a first client would.
        _manifest_rate(served.url, "cache/bench/small", 0.1)
        _blob_rate(served.url, "cache/bench/big", layer)
        time.sleep(1.0)  # the fetch links the blob just after its last byte went out
        for i in range(repeat):
            pairs = [("cache", "cache/bench"), ("local", "acme")]
            for kind, prefix in pairs if i % 2 == 0 else pairs[::-1]:
                results[f"{kind}_manifest"].append(
                    _manifest_rate(served.url, f"{prefix}/small", 5.0)
                )
                results[f"{kind}_blob"].append(_blob_rate(served.url, f"{prefix}/big", layer))
    return _report(results, tags, big_mib, repeat, out)


def _report(
    results: dict[str, list[float]], tags: int, big_mib: int, repeat: int, out: Path
) -> str:
    m = {k: _median(v) for k, v in results.items()}
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout.strip()
    lines = [
        "# Mirroring and the pull-through cache, measured",
        "",
        f"`python -m bench.mirroring --tags {tags} --big-mib {big_mib} --repeat {repeat}` on "
        f"commit {commit}, {when}, {os.cpu_count()} CPUs. Medians of {repeat} interleaved "
        "runs; the upstream is the reference registry (distribution 2.8) on the same machine.",
        "",
        "| measurement | cargohold | compared with | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| mirror {tags} small tags + one {big_mib} MiB image, s (vs `skopeo sync`) | "
        f"{m['cargohold']:.1f} | {m['skopeo']:.1f} | "
        f"{m['cargohold'] / m['skopeo']:.2f}{X} | ≤ 1{X} |",
        f"| peak RSS of `mirror run-once`, MiB | {m['rss']:.0f} | | | |",
        f"| manifest GET by tag, req/s: cache hit vs local repository | "
        f"{m['cache_manifest']:.0f} | {m['local_manifest']:.0f} | "
        f"{m['cache_manifest'] / m['local_manifest']:.2f}{X} | ≈ 1{X} |",
        f"| {big_mib} MiB blob GET, MiB/s: cache hit vs local repository | "
        f"{m['cache_blob']:.0f} | {m['local_blob']:.0f} | "
        f"{m['cache_blob'] / m['local_blob']:.2f}{X} | ≈ 1{X} |",
        "",
        "Raw samples: `"
        + json.dumps({k: [round(x, 2) for x in v] for k, v in results.items()})
        + "`",
        "",
    ]
    text = "\n".join(lines)
    out.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mirroring", description=__doc__)
    parser.add_argument("--tags", type=int, default=200)
    parser.add_argument("--big-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        print(run(args.tags, args.big_mib, args.repeat, args.out))
    except BenchError as e:
        print(f"bench.mirroring: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
