"""The registries under test, each a real process on a free 127.0.0.1 port.

``cargohold(...)`` runs ``python -m cargohold.cli serve`` (embedded default: SQLite and the
filesystem in ``data_dir``; access control off unless asked, as the reference registry
runs without auth); ``reference(...)`` runs Debian's ``docker-registry`` (CNCF
distribution 2.8) with a config of our own. Both yield a ``Registry`` and stop the process
(SIGTERM, then SIGKILL) on exit. ``tree_rss`` reads the resident memory of a server and of
every process under it from ``/proc``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    """A running registry: ``key`` names it in results, ``label`` in the table."""

    key: str
    label: str
    url: str
    pid: int
    log: Path

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
    key: str, label: str, data_dir: Path, workdir: Path, *, workers: int, auth: bool = False
) -> Iterator[Registry]:
    """``cargohold serve --workers N`` on ``data_dir`` (several servers may share one: the
    workers of one server already share it the same way)."""
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
            yield Registry(key, label, url, process.pid, log)
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


def reference_binary() -> str | None:
    """The reference registry's binary (Debian's ``docker-registry``), if installed."""
    return shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if os.access("/usr/bin/docker-registry", os.X_OK) else None
    )


def reference_version() -> str:
    binary = reference_binary()
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().removeprefix(binary).strip() or "unknown"


@contextmanager
def reference(key: str, label: str, workdir: Path) -> Iterator[Registry]:
    """The reference registry with storage, config and log under ``workdir``.

    The config is Debian's packaged one (``/etc/docker/registry/config.yml``: the
    in-memory blob descriptor cache on) without its auth and health checks, as the
    reference registry is usually run. NOTE: its access log and info logging are off:
    a log line per request would cost it throughput that cargohold, which logs no access
    lines, does not pay.
    """
    binary = reference_binary()
    if binary is None:
        raise BenchError(
            "the reference registry is not installed (Debian package docker-registry: "
            "apt-get install docker-registry)"
        )
    root = workdir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(_REFERENCE_CONFIG.format(root=root, port=port), encoding="utf-8")
    log = workdir / f"{key}.log"
    # REGISTRY_* variables override the config file: none may leak in from outside.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with (
        log.open("wb") as sink,
        subprocess.Popen(
            [binary, "serve", str(config)], env=env, stdout=sink, stderr=subprocess.STDOUT
        ) as process,
    ):
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, f"{url}/v2/", log, "the reference registry")
            yield Registry(key, label, url, process.pid, log)
        finally:
            stop_process(process, timeout=30)
