"""The C allocator's settings for a long-running, many-threaded server process.

glibc's ``malloc`` gives each thread that allocates while another holds the main heap an
*arena* of its own, up to eight per core, and keeps what is freed in an arena for later
use by that arena. A worker serves requests on 8+ threads, so its freed memory ends up
spread over many arenas and stays resident: after 10,000 tag pushes and some listings, a
worker held ~20 MiB that ``malloc_trim`` could give back (measured with gdb on a
``--workers 2`` server). Two arenas cost nothing measurable here: the threads run Python
under one GIL and small objects come from Python's own allocator anyway.

Elsewhere (musl, macOS) these calls do nothing. ``MALLOC_ARENA_MAX`` in the environment
wins: glibc reads it itself, and :func:`limit_arenas` leaves it be.
"""

from __future__ import annotations

import ctypes
import os
import platform
from functools import cache

# glibc's mallopt parameter for the arena limit (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
SERVER_ARENAS = 2


@cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):  # pragma: no cover - glibc always has both
        return None
    return libc


def limit_arenas(arenas: int = SERVER_ARENAS) -> bool:
    """Cap the number of malloc arenas of this process (and of the processes it forks
    later). Call it before threads start: arenas already made stay. Returns whether the
    cap was set here (False: not glibc, or ``MALLOC_ARENA_MAX`` set by the operator)."""
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> None:
    """Give the memory ``free`` kept back to the system (``malloc_trim(0)``): for a
    process about to fork workers, so they do not start with the parent's leftovers."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
