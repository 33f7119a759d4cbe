"""Where everything lives: the data dir's tree, and its PostgreSQL counterparts.

The one module that builds paths under the data dir (``data_dir``, default
``./cargohold-data``); everyone else asks a ``DataDir``. The tree::

    <data_dir>/
    ├── site-id                         this installation's site id (a UUID, made once;
    │                                   on PostgreSQL a row in ``cargohold_site``)
    ├── signing-key.pem                 the registry-token key (P-256, encrypted under
    │                                   ``cipher_key``), unless ``signing_key_file`` is set
    ├── mirror-key                      the key that seals upstream passwords (32 bytes,
    │                                   sealed under ``cipher_key``), unless
    │                                   ``mirror_key_file`` is set
    ├── events.sqlite                   the event log (SQLite; on PostgreSQL its tables)
    ├── views.sqlite                    the views: read models, tracking, upload
    │                                   sessions, login throttle, access log, audit chain
    ├── geo.sqlite                      geo-replication's bookkeeping: the peers' links
    │                                   and leases, the blob backlog (its own file, so
    │                                   that the replicator never waits on the views'
    │                                   writer; on PostgreSQL tables beside the views)
    ├── views-scratch-<id>.sqlite       replay rebuild/verify's scratch views; removed
    │                                   when it ends (PostgreSQL: schema
    │                                   ``cargohold_scratch_<id>``)
    ├── as-of/
    │   └── views-<T>.sqlite            the kept views as of moment T (``replay as-of``;
    │                                   PostgreSQL: schema ``cargohold_as_of_<T in ms>``)
    ├── blobs/ ...                      the filesystem blob store's committed blobs and
    ├── uploads/ ...                    uploads in progress: their keys are drawn and
    │                                   built by ``adapters/blobs/keys.py``
    ├── cache-spool/, geo-spool/        blobs in flight from a cache's upstream, or
    │                                   from a geo peer, to the clients waiting
    ├── geo-fetch/<hex>.part            a geo peer's blob being fetched, its bytes so far
    └── .write-probe-<pid>              made and removed by the startup check

A ``*.sqlite`` file has its ``-wal`` and ``-shm`` companions beside it while open.
"""

from __future__ import annotations

import os
from pathlib import Path

from cargohold.domain.clock import stamp

SQLITE_COMPANIONS = ("", "-wal", "-shm")


class DataDir:
    """The data dir at ``root`` (nothing is created until asked)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def prepare(self) -> None:
        """Create the data dir if needed and check that it is writable (``OSError``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()

    @property
    def site_id(self) -> Path:
        return self.root / "site-id"

    @property
    def signing_key(self) -> Path:
        return self.root / "signing-key.pem"

    @property
    def mirror_key(self) -> Path:
        return self.root / "mirror-key"

    @property
    def cache_spool(self) -> Path:
        """The pull-through cache's blobs in flight (``adapters/spool.py``)."""
        return self.root / "cache-spool"

    @property
    def geo_spool(self) -> Path:
        """Geo peers' blobs in flight to a client that pulled them here first."""
        return self.root / "geo-spool"

    @property
    def geo_fetch(self) -> Path:
        """The bytes of geo peers' blobs being fetched, kept to resume from."""
        return self.root / "geo-fetch"

    @property
    def events(self) -> Path:
        return self.root / "events.sqlite"

    @property
    def views(self) -> Path:
        return self.root / "views.sqlite"

    @property
    def geo(self) -> Path:
        return self.root / "geo.sqlite"

    @property
    def blob_root(self) -> Path:
        """The filesystem blob store's root: ``blobs/`` and ``uploads/`` go below it."""
        return self.root

    def scratch_views(self, token: str) -> Path:
        """Replay's scratch views, named by a random ``token``."""
        return self.root / f"views-scratch-{token}.sqlite"

    def as_of_views(self, at_ms: int) -> Path:
        """The kept views as of ``at_ms`` (``views-20261124T150000.000Z.sqlite``)."""
        return self.root / "as-of" / f"views-{compact_stamp(at_ms)}.sqlite"


def remove_sqlite(path: Path) -> bool:
    """Delete a SQLite file and its companions; whether the file was there."""
    existed = path.exists()
    for suffix in SQLITE_COMPANIONS:
        Path(str(path) + suffix).unlink(missing_ok=True)
    return existed


def scratch_schema(token: str) -> str:
    return f"cargohold_scratch_{token}"


def as_of_schema(at_ms: int) -> str:
    return f"cargohold_as_of_{at_ms}"


def compact_stamp(at_ms: int) -> str:
    """``stamp`` without ``-`` and ``:`` (a file name): ``20261124T150000.000Z``."""
    return stamp(at_ms).replace("-", "").replace(":", "")
