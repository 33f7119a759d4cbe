"""The replay operations and the chores, called with a container's collaborators.

The operations take exactly what they use (``cargohold/replay``,
``cargohold/chores.py``); tests hold a ``Container`` (the composition root's), so these
unpack it the way ``cargohold.cli`` and ``bootstrap/serving.py`` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cargohold import chores
from cargohold.adapters.data_dir import DataDir
from cargohold.adapters.eventstore import LogReader
from cargohold.bootstrap import Container
from cargohold.replay import bundle, bundle_import
from cargohold.replay import rebuild as replay


def rebuild(c: Container, *, quiet: bool = False) -> replay.ReplayResult:
    return replay.rebuild(
        c.views_db, LogReader(c.log), c.runner, DataDir(c.settings.data_dir), quiet=quiet
    )


def verify(c: Container, *, quiet: bool = False) -> replay.ReplayResult:
    return replay.verify(
        c.views_db, LogReader(c.log), c.runner, DataDir(c.settings.data_dir), quiet=quiet
    )


def export_bundle(c: Container, path: Path, **options: Any) -> bundle.ExportResult:
    return bundle.export_bundle(c.log, c.blobs, c.site_id, path, **options)


def import_bundle(c: Container, path: Path, **options: Any) -> bundle_import.ImportResult:
    return bundle_import.import_bundle(
        c.log, c.blobs, c.views_db, c.runner, c.site_id, path, **options
    )


def sweep_expired_tags(c: Container) -> int:
    """The tag-expiry chore's one pass (``chores.sweep_expired_tags``)."""
    return chores.sweep_expired_tags(c.queries, c.registry, c.site_id)
