"""The replay operations, called with a container's collaborators.

The operations take exactly what they use (``cargohold/replay``); tests hold a
``Container`` (the composition root's), so these unpack it the way ``cargohold.cli``
does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
