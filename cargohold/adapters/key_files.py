"""Key files made on first start: written once, privately, and never replaced.

Both the signing key (``tokens.py``) and the mirror key (``secret_box.py``) are generated
by the first process that needs them. ``create_exclusive`` writes such a file: the bytes
go to a temporary file (mode 0600, fsynced) that is then *linked* into place, not
renamed, so the link fails when another process created the file first, and the caller
uses that process's key instead of silently replacing it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def create_exclusive(path: Path, content: bytes) -> bytes | None:
    """Write ``content`` to the new file ``path`` (mode 0600); ``None`` when it is ours,
    or the bytes of the file another process created there first. Raises ``OSError``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_bytes()
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
