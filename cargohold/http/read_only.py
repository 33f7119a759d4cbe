"""Serving the registry as of a moment: every surface refuses writes the same way."""

from __future__ import annotations

from cargohold.bootstrap import Container

#: Methods that change nothing; anything else is a write unless its resource says it
#: only reads (``reads_only``, like the logs export that Quay lets one POST).
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only_refusal(container: Container) -> str | None:
    """Why a write to ``container``'s registry is refused (raise ``ReadOnly`` with it),
    or ``None`` if it takes writes."""
    return container.read_only
