"""The registries under test, each a real process on a free 127.0.0.1 port.

``cargohold(...)`` runs ``python -m cargohold.cli serve`` (embedded default: SQLite and the
filesystem in ``data_dir``, or PostgreSQL + S3 through ``env``; access control off unless
asked, as the reference registry runs without auth); ``reference(...)`` runs Debian's
``docker-registry`` (CNCF distribution 2.8) or distribution v3's ``registry`` (built from
the Go module proxy by ``scripts/install-test-services``) with a config of our own. Both
yield a ``Registry`` and stop the process (SIGTERM, then SIGKILL) on exit. ``tree_rss``
reads the resident memory of a server and of every process under it from ``/proc``;
``RssSampler`` samples its peak in a thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.services import free_port, stop_process

STARTUP_TIMEOUT = 60.0
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """The harness cannot go on (a server did not start, a request failed, a tool is
    missing); the message says what and carries the relevant output."""


@dataclass(frozen=True)
class Registry:
    """A running registry: ``key`` names it in results, ``label`` in the table.

    ``workers`` is cargohold's worker count (0: a reference registry); registries with
    the same ``group`` share their data (content is loaded once per group); ``data_roots``
    are the directories holding its blobs (the big-push measurement frees its blob there);
    ``backend`` is ``sqlite`` or ``postgres`` for cargohold, ``""`` for a reference.
    """

    key: str
    label: str
    url: str
    pid: int
    log: Path
    workers: int = 0
    group: str = ""
    data_roots: tuple[Path, ...] = field(default=())
    backend: str = ""

    @property
    def is_reference(self) -> bool:
        return self.workers == 0

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found.extend(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return found


def _vm_rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """The sum of VmRSS over ``pid`` and all its descendants, in bytes.

    NOTE: forked workers share their parent's unmodified pages; VmRSS counts them once per
    process, so for ``--workers N`` this is an upper bound of the real footprint.
    """
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _vm_rss(p)
        todo.extend(_children(p))
    return total


class RssSampler:
    """Samples ``tree_rss(pid)`` every ``interval`` seconds in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = tree_rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss(self.pid))

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, tree_rss(self.pid))


def _wait_until_up(process: subprocess.Popen[Any], url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise BenchError(f"{what} exited with status {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise BenchError(f"{what} did not answer {url} within {STARTUP_TIMEOUT:.0f}s")


@contextmanager
def cargohold(
    key: str,
    label: str,
    data_dir: Path,
    workdir: Path,
    *,
    workers: int,
    auth: bool = False,
    env: Mapping[str, str] | None = None,
    group: str | None = None,
    data_roots: tuple[Path, ...] | None = None,
) -> Iterator[Registry]:
    """``cargohold serve --workers N`` on ``data_dir`` (several servers may share one: the
    workers of one server already share it the same way). ``env`` adds ``CARGOHOLD_*``
    settings (``CARGOHOLD_DATABASE``, ``CARGOHOLD_BLOB_STORE``, ...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / f"{key}.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "PYTHONPATH": str(REPO_ROOT),
        "CARGOHOLD_AUTH": "on" if auth else "off",
        "CARGOHOLD_ADMIN_PASSWORD": "bench-admin-password",
        "TMPDIR": str(workdir),
        **(env or {}),
    }
    argv = [
        sys.executable,
        "-m",
        "cargohold.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    with (
        log.open("wb") as sink,
        subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT
        ) as process,
    ):
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, f"{url}/v2/", log, f"cargohold ({label})")
            yield Registry(
                key,
                label,
                url,
                process.pid,
                log,
                workers=workers,
                group=group or key,
                data_roots=(data_dir,) if data_roots is None else data_roots,
                backend="postgres" if "CARGOHOLD_DATABASE" in (env or {}) else "sqlite",
            )
        finally:
            stop_process(process, timeout=30)


_REFERENCE_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: cargohold-bench-reference-registry
"""


# distribution v3's binary, built by scripts/install-test-services (optional) from this
# module path at this version, into the Go bin dir.
V3_MODULE = "github.com/distribution/distribution/v3"
V3_VERSION = "v3.0.0"
V3_BINARY = "registry-v3"

FLAVOURS = {"2.8": "distribution 2.8", "v3": "distribution v3"}


def _go_bin_dir() -> Path:
    gobin = os.environ.get("GOBIN")
    if gobin:
        return Path(gobin)
    return Path(os.environ.get("GOPATH") or Path.home() / "go") / "bin"


def reference_binary(flavour: str = "2.8") -> str | None:
    """The reference registry's binary: Debian's ``docker-registry`` (2.8) or the
    ``registry-v3`` that ``scripts/install-test-services`` builds; None if absent."""
    if flavour == "v3":
        found = shutil.which(V3_BINARY)
        candidate = _go_bin_dir() / V3_BINARY
        return found or (str(candidate) if os.access(candidate, os.X_OK) else None)
    return shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if os.access("/usr/bin/docker-registry", os.X_OK) else None
    )


def reference_version(flavour: str = "2.8") -> str:
    binary = reference_binary(flavour)
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().removeprefix(binary).strip() or "unknown"


def _missing_reference(flavour: str) -> BenchError:
    if flavour == "v3":
        return BenchError(
            f"distribution v3 is not installed ({V3_BINARY} on PATH or in {_go_bin_dir()}): "
            "scripts/install-test-services builds it from the Go module proxy "
            f"({V3_MODULE}/cmd/registry@{V3_VERSION}); or leave it out: --servers without "
            "reference-v3"
        )
    return BenchError(
        "the reference registry is not installed (Debian package docker-registry: "
        "apt-get install docker-registry); or leave it out: --servers without reference"
    )


@contextmanager
def reference(key: str, label: str, workdir: Path, flavour: str = "2.8") -> Iterator[Registry]:
    """A reference registry with storage, config and log under ``workdir``.

    The config is Debian's packaged one (``/etc/docker/registry/config.yml``: the
    in-memory blob descriptor cache on) without its auth and health checks, as the
    reference registry is usually run; v3 reads the same keys. NOTE: its access log and
    info logging are off: a log line per request would cost it throughput that cargohold,
    which logs no access lines, does not pay. v3 also exports OpenTelemetry traces by
    default (to an OTLP collector on localhost that is not there): turned off through
    ``OTEL_*_EXPORTER=none``.
    """
    binary = reference_binary(flavour)
    if binary is None:
        raise _missing_reference(flavour)
    root = workdir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(_REFERENCE_CONFIG.format(root=root, port=port), encoding="utf-8")
    log = workdir / f"{key}.log"
    # REGISTRY_* variables override the config file: none may leak in from outside.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "OTEL_"))}
    if flavour == "v3":
        env |= {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
    what = f"the reference registry ({FLAVOURS[flavour]})"
    with (
        log.open("wb") as sink,
        subprocess.Popen(
            [binary, "serve", str(config)], env=env, stdout=sink, stderr=subprocess.STDOUT
        ) as process,
    ):
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, f"{url}/v2/", log, what)
            yield Registry(key, label, url, process.pid, log, group=key, data_roots=(root,))
        finally:
            stop_process(process, timeout=30)
