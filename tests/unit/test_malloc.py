"""The allocator settings of a server process (``cargohold/adapters/malloc.py``).

Each case runs in a fresh interpreter: arenas, once made, stay for the process's life."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="arenas are glibc's",
)

# Counts the arenas of the process after 8 threads allocated at the same time, from
# glibc's own report (malloc_info: one <heap nr=...> per arena).
_THREADS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from cargohold.adapters import malloc

    limited = malloc.limit_arenas() if sys.argv[1] == "limit" else None
    barrier = threading.Barrier(8)
    kept = []

    def allocate():
        barrier.wait()
        kept.append([bytearray(1000) for _ in range(2000)])
        barrier.wait()

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        stream = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        arenas = open(report.name).read().count("<heap nr=")
    print(limited, arenas)
    """
)


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run(
        [sys.executable, "-c", _THREADS, mode],
        capture_output=True,
        text=True,
        check=True,
        env=environ,
        timeout=60,
    ).stdout.split()
    return out[0], int(out[1])


def test_without_the_cap_threads_make_arenas_of_their_own() -> None:
    # The control: what the cap is for, and proof that the count below can fail.
    _, arenas = _arenas("none")
    assert arenas > 2


def test_the_cap_keeps_a_many_threaded_process_to_two_arenas() -> None:
    limited, arenas = _arenas("limit")
    assert limited == "True"
    assert arenas <= 2


def test_the_operators_malloc_arena_max_wins() -> None:
    limited, arenas = _arenas("limit", MALLOC_ARENA_MAX="4")
    assert limited == "False"
    assert 2 < arenas <= 4
