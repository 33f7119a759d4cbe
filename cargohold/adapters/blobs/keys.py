"""Every storage key of the blob stores, built in one place.

Keys are ``/``-separated and relative: the filesystem store joins them under its root
directory, the S3 store under its optional key prefix. The tree::

    <root | prefix>/
    ├── blobs/
    │   ├── sha256/<hex[0:2]>/<hex>        a committed blob, immutable
    │   └── sha512/<hex[0:2]>/<hex>
    ├── uploads/
    │   └── <upload id>/                   one staged upload
    │       ├── startedat                  start time, seconds since the epoch (ASCII)
    │       ├── data                       filesystem: the staged content so far
    │       └── parts/<offset:020d>        S3: one object per append, named by its offset
    └── check/<probe id>                   written then removed by ``check()``

The two-hex-digit fan-out keeps directories (and S3 listings) small. Part names are
zero-padded so that lexicographic order (the order S3 lists in) is offset order.

Upload ids arrive from URLs, so they are validated here before they become part of a
path: an id off the grammar (``/``, ``..``, too long) is an unknown upload.
"""

from __future__ import annotations

import re

from cargohold.domain.errors import UploadUnknown
from cargohold.domain.values import Digest

BLOBS = "blobs"
UPLOADS = "uploads"
CHECK = "check"

STARTED_AT = "startedat"
DATA = "data"
PARTS = "parts"

_OFFSET_WIDTH = 20
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def blob(digest: Digest) -> str:
    """``blobs/<algorithm>/<hex[0:2]>/<hex>``: where a committed blob lives."""
    return f"{BLOBS}/{digest.algorithm.value}/{digest.hex[:2]}/{digest.hex}"


def is_upload_id(upload_id: str) -> bool:
    return isinstance(upload_id, str) and _UPLOAD_ID_RE.fullmatch(upload_id) is not None


def upload(upload_id: str) -> str:
    """``uploads/<id>``, the directory (prefix) of one upload; ``UploadUnknown`` if malformed."""
    if not is_upload_id(upload_id):
        raise UploadUnknown(f"unknown upload: {str(upload_id)[:200]!r}")
    return f"{UPLOADS}/{upload_id}"


def upload_started_at(upload_id: str) -> str:
    """``uploads/<id>/startedat``: the upload's start time; its presence defines the upload."""
    return f"{upload(upload_id)}/{STARTED_AT}"


def upload_data(upload_id: str) -> str:
    """``uploads/<id>/data``: the filesystem store's staged content."""
    return f"{upload(upload_id)}/{DATA}"


def upload_parts(upload_id: str) -> str:
    """``uploads/<id>/parts/``: the S3 store's prefix for an upload's parts."""
    return f"{upload(upload_id)}/{PARTS}/"


def upload_part(upload_id: str, offset: int) -> str:
    """``uploads/<id>/parts/<offset:020d>``: the part appended at ``offset``."""
    if offset < 0:
        raise ValueError(f"negative offset: {offset}")
    return f"{upload_parts(upload_id)}{offset:0{_OFFSET_WIDTH}d}"


def part_offset(key: str) -> int:
    """The offset encoded in a part key (the inverse of ``upload_part``)."""
    name = key.rsplit("/", 1)[-1]
    if len(name) != _OFFSET_WIDTH or not name.isdigit():
        raise ValueError(f"not a part key: {key!r}")
    return int(name)


def upload_id_of(prefix: str) -> str | None:
    """The upload id in ``uploads/<id>/`` (as S3 lists it), or None if it is not one."""
    parts = prefix.strip("/").split("/")
    if len(parts) == 2 and parts[0] == UPLOADS and is_upload_id(parts[1]):
        return parts[1]
    return None


def check_probe(probe_id: str) -> str:
    """``check/<probe id>``: the object ``check()`` writes and removes."""
    return f"{CHECK}/{probe_id}"
