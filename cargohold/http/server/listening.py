"""The listening socket: bound once, before any worker is forked, and announced."""

from __future__ import annotations

import socket

from cargohold.config import Settings


def bind(settings: Settings) -> socket.socket:
    """A socket listening on ``settings.host``/``port`` (IPv6 when the host has a colon).

    Raises ``OSError`` when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(1024)
    return sock


def announce(settings: Settings, sock: socket.socket) -> None:
    """Print the one line that says where the registry serves (tests and operators read it)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f", {settings.workers} workers" if settings.workers > 1 else ""
    past = f", read-only as of {settings.as_of}" if settings.as_of else ""
    print(
        f"cargohold listening on http://{shown}:{port} "
        f"(data in {settings.data_dir}{workers}{past})",
        flush=True,
    )
