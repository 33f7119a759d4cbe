"""Closed-loop HTTP load: ``connections`` keep-alive connections each sending one request
after another for ``duration`` seconds; requests/s and latency percentiles.

``wrk`` (Debian package ``wrk``) does it when installed: a small Lua script sets the
method and headers and prints the summary and the p50/p99 latencies as one line. Without
it, a fallback in Python runs the connections as asyncio tasks spread over one process
per core (threads in one process would measure the client's GIL, not the server).
Either way a request answered with another status than 200 is an error, and a run with
errors raises ``BenchError``: a fast 404 is not a result.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.servers import BenchError

LOADERS = ("auto", "wrk", "python")


@dataclass(frozen=True)
class Load:
    """What to send: ``method`` on ``path`` of the registry at ``host``:``port``."""

    host: str
    port: int
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def resolve_loader(name: str) -> str:
    """``auto`` is ``wrk`` when installed, else ``python``."""
    if name == "auto":
        return "wrk" if wrk_binary() else "python"
    if name == "wrk" and not wrk_binary():
        raise BenchError("wrk is not installed (Debian package wrk: apt-get install wrk)")
    return name


def run_load(
    load: Load, *, connections: int, duration: float, loader: str, threads: int = 2
) -> LoadResult:
    if loader == "wrk":
        return _run_wrk(load, connections, duration, threads)
    return _run_python(load, connections, duration, threads)


# -- wrk ----------------------------------------------------------------------------------

_LUA = """\
wrk.method = {method}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH-RESULT %d %d %d %d %.1f %.1f\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _run_wrk(load: Load, connections: int, duration: float, threads: int) -> LoadResult:
    binary = wrk_binary()
    if binary is None:
        raise BenchError("wrk is not installed")
    headers = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in load.headers
    )
    script = _LUA.format(method=_lua_string(load.method), headers=headers)
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        lua = Path(tmp) / "load.lua"
        lua.write_text(script, encoding="utf-8")
        # NOTE: wrk takes whole seconds; --timeout is generous so a slow answer counts as
        # a slow answer, not as an error.
        argv = [
            binary,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "30s",
            "-s",
            str(lua),
            f"http://{load.host}:{load.port}{load.path}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    line = next(
        (x for x in done.stdout.splitlines() if x.startswith("BENCH-RESULT ")),
        None,
    )
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stdout} {done.stderr}")
    requests, micros, status_errors, socket_errors, p50, p99 = line.split()[1:]
    if int(status_errors) or int(socket_errors):
        raise BenchError(
            f"{load.method} {load.path}: {status_errors} error statuses and "
            f"{socket_errors} socket errors in {requests} requests"
        )
    if int(requests) == 0:
        raise BenchError(f"{load.method} {load.path}: no request completed")
    return LoadResult(int(requests), int(micros) / 1e6, float(p50) / 1e3, float(p99) / 1e3)


# -- the Python fallback ------------------------------------------------------------------


def _run_python(load: Load, connections: int, duration: float, processes: int) -> LoadResult:
    processes = max(1, min(processes, os.cpu_count() or 1, connections))
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.0  # all processes start together, once spawned
    with context.Pool(processes) as pool:
        parts = pool.starmap(_client_process, [(load, n, duration, start_at) for n in shares])
    latencies = sorted(x for part, _, _ in parts for x in part)
    errors = sum(e for _, e, _ in parts)
    seconds = max(s for _, _, s in parts)
    if errors:
        raise BenchError(f"{load.method} {load.path}: {errors} failed requests")
    if not latencies:
        raise BenchError(f"{load.method} {load.path}: no request completed")
    return LoadResult(
        len(latencies), seconds, _percentile(latencies, 50) * 1e3, _percentile(latencies, 99) * 1e3
    )


def _percentile(ordered: list[float], p: float) -> float:
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _client_process(
    load: Load, connections: int, duration: float, start_at: float
) -> tuple[list[float], int, float]:
    time.sleep(max(0.0, start_at - time.time()))
    return asyncio.run(_clients(load, connections, duration))


async def _clients(load: Load, connections: int, duration: float) -> tuple[list[float], int, float]:
    started = time.perf_counter()
    deadline = started + duration
    results = await asyncio.gather(*(_connection(load, deadline) for _ in range(connections)))
    latencies = [x for part, _ in results for x in part]
    return latencies, sum(e for _, e in results), time.perf_counter() - started


async def _connection(load: Load, deadline: float) -> tuple[list[float], int]:
    head = [f"{load.method} {load.path} HTTP/1.1", f"Host: {load.host}:{load.port}"]
    head += [f"{k}: {v}" for k, v in load.headers]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    latencies: list[float] = []
    errors = 0
    reader, writer = await asyncio.open_connection(load.host, load.port)
    try:
        while (now := time.perf_counter()) < deadline:
            writer.write(request)
            status, close = await _read_response(reader, load.method == "HEAD")
            latencies.append(time.perf_counter() - now)
            errors += status != 200
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(load.host, load.port)
    finally:
        writer.close()
    return latencies, errors


async def _read_response(reader: asyncio.StreamReader, head_only: bool) -> tuple[int, bool]:
    """Read one response; (status, whether the server closes the connection)."""
    header = await reader.readuntil(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip().lower()
    close = fields.get("connection") == "close"
    if head_only or status in (204, 304):
        return status, close
    if fields.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status, close
    await reader.readexactly(int(fields.get("content-length", "0")))
    return status, close
