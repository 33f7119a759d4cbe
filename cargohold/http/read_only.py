"""Serving the registry as of a moment: every surface refuses writes the same way.

Each surface takes ``read_only: str | None``: why a write is refused (it raises
``ReadOnly`` with it), or ``None`` when the registry takes writes.
"""

from __future__ import annotations

#: Methods that change nothing; anything else is a write unless its resource says it
#: only reads (``reads_only``, like the logs export that Quay lets one POST).
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
