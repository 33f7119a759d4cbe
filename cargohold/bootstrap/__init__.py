"""The one composition root: ``Settings`` in, a wired ``Container`` out.

- ``stores``: each store opened from the settings (paths from ``adapters/data_dir.py``),
  a failure turned into a one-line ``StartupError``;
- ``container``: the services and queries wired over them (``bootstrap``), and the
  first start's superuser (``ensure_admin``);
- ``serving``: ``cargohold serve``: the app, the background chores and the waitress
  server in one process or in forked workers.

Nothing is built at import time. Only this package, ``http/app.create_app`` and
``cli`` know the ``Container``; they hand each resource, chore and operation the
collaborators it uses.
"""

from cargohold.bootstrap.container import Container, bootstrap, ensure_admin
from cargohold.bootstrap.stores import (
    StartupError,
    log_environment,
    open_blob_store,
    open_views_database,
)

__all__ = [
    "Container",
    "StartupError",
    "bootstrap",
    "ensure_admin",
    "log_environment",
    "open_blob_store",
    "open_views_database",
]
