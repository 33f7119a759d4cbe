"""Header builders and parsers of the distribution spec, kept out of the resources."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import falcon

from cargohold.domain.errors import RangeInvalid
from cargohold.domain.values import Digest, RepositoryName
from cargohold.http.registry_v2.errors import V2Error

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
# NOTE: [0-9], not \d (which takes other scripts' digits), and at most 18 of them, so
# every number fits int() and 64 bits; a longer one cannot be a real offset.
_CONTENT_RANGE = re.compile(r"(?:bytes )?([0-9]{1,18})-([0-9]{1,18})")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_MAX_DIGITS = 18


def blob_location(name: RepositoryName, digest: Digest) -> str:
    return f"/v2/{name}/blobs/{digest}"


def upload_location(name: RepositoryName, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def manifest_location(name: RepositoryName, digest: Digest) -> str:
    return f"/v2/{name}/manifests/{digest}"


def upload_range(size: int) -> str:
    """The ``Range`` header of an upload: bytes received so far, inclusive.

    NOTE: as in distribution, an empty upload reports ``0-0``.
    """
    return f"0-{max(size - 1, 0)}"


def set_upload_headers(
    resp: falcon.Response, name: RepositoryName, upload_id: str, size: int
) -> None:
    resp.set_header("Location", upload_location(name, upload_id))
    resp.set_header("Range", upload_range(size))
    resp.set_header("Docker-Upload-UUID", upload_id)


def next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


def parse_content_range(value: str) -> tuple[int, int]:
    """A PATCH ``Content-Range`` (``start-end``, inclusive); 416 if malformed."""
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if m is None or int(m.group(2)) < int(m.group(1)):
        raise V2Error(falcon.HTTP_416, "BLOB_UPLOAD_INVALID", f"bad Content-Range {value!r}")
    return int(m.group(1)), int(m.group(2))


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """A single ``Range: bytes=...`` request as (offset, length), or None for the whole
    blob (no header, or one we may ignore, such as several ranges). Raises
    ``RangeInvalid`` when unsatisfiable."""
    if not value:
        return None
    m = _RANGE.fullmatch(value.strip())
    if m is None:
        return None  # RFC 9110: a server may ignore a Range it does not understand
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if len(first) > _MAX_DIGITS:
        raise RangeInvalid(f"range starts beyond any blob ({len(first)} digits)")
    if len(last) > _MAX_DIGITS:
        last = str(size)  # an end beyond the blob means "to the end"; so does a huge suffix
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeInvalid("empty suffix range")
        start = max(size - suffix, 0)
        return start, size - start
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or (last and int(last) < start):
        raise RangeInvalid(f"range {value} not satisfiable for {size} bytes")
    return start, end - start + 1


def parse_page_size(value: str | None, maximum: int) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise V2Error(falcon.HTTP_400, "PAGINATION_NUMBER_INVALID", f"invalid n: {value[:50]!r}")
    if len(value) > _MAX_DIGITS:
        return maximum
    return min(int(value), maximum)
