"""A small ``/v2`` client for loading content and timing transfers (keep-alive, http.client).

Only what the harness needs: push a blob (POST then PUT with the whole body, the upload
both registries speak; distribution 2.8 ignores a single POST's ``digest``), a streamed
upload (POST, one ``Transfer-Encoding: chunked`` PATCH, PUT), mount, manifest PUT, and
reading a blob into a reusable buffer. Every failure raises ``BenchError`` with the
status and the start of the body.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from bench.servers import BenchError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
TIMEOUT = 600.0
_READ = 1 << 20


def sha256(data: bytes | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    """One keep-alive connection to ``base_url``; reconnects when the server closed it."""

    def __init__(self, base_url: str, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        body: bytes | memoryview | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        *,
        expect: int | tuple[int, ...] = 200,
        chunked: bool = False,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send one request and read the whole answer; ``BenchError`` unless its status
        is one of ``expect``."""
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise BenchError(f"{method} {path}: {e!r}") from e
        if response.will_close:
            self.close()
        wanted = (expect,) if isinstance(expect, int) else expect
        if response.status not in wanted:
            raise BenchError(f"{method} {path}: {response.status} {data[:300]!r}")
        return response, data

    # -- uploads ----------------------------------------------------------------------

    def _start_upload(self, name: str) -> str:
        response, _ = self.request("POST", f"/v2/{name}/blobs/uploads/", expect=202)
        location = response.getheader("Location")
        if not location:
            raise BenchError(f"POST /v2/{name}/blobs/uploads/: no Location")
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}digest={quote(digest)}"

    def push_blob(self, name: str, data: bytes | memoryview, digest: str | None = None) -> str:
        """Monolithic upload: POST, then PUT ``?digest=`` with the whole body."""
        digest = digest or sha256(data)
        location = self._start_upload(name)
        self.request(
            "PUT",
            self._with_digest(location, digest),
            body=data,
            headers={"Content-Type": "application/octet-stream"},
            expect=201,
        )
        return digest

    def push_blob_streamed(
        self, name: str, chunks: Iterable[bytes], digest: str | Callable[[], str]
    ) -> None:
        """Streamed upload: POST, one PATCH whose body is sent ``Transfer-Encoding:
        chunked`` (as docker pushes a layer), then an empty PUT ``?digest=``. ``digest``
        may be a function called after the PATCH (a digest hashed while sending)."""
        location = self._start_upload(name)
        response, _ = self.request(
            "PATCH",
            location,
            body=chunks,
            headers={"Content-Type": "application/octet-stream"},
            expect=202,
            chunked=True,
        )
        location = response.getheader("Location") or location
        parts = urlsplit(location)
        location = parts.path + (f"?{parts.query}" if parts.query else "")
        final = digest if isinstance(digest, str) else digest()
        self.request("PUT", self._with_digest(location, final), expect=201)

    def mount(self, name: str, digest: str, source: str) -> None:
        path = f"/v2/{name}/blobs/uploads/?mount={quote(digest)}&from={quote(source)}"
        self.request("POST", path, expect=201)

    # -- manifests --------------------------------------------------------------------

    def put_manifest(self, name: str, reference: str, body: bytes) -> str:
        response, _ = self.request(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            body=body,
            headers={"Content-Type": OCI_MANIFEST},
            expect=201,
        )
        return response.getheader("Docker-Content-Digest") or sha256(body)

    def get_json(self, path: str) -> tuple[Any, str | None]:
        """GET ``path``; the decoded JSON body and the ``Link`` header."""
        response, data = self.request("GET", path)
        return json.loads(data), response.getheader("Link")

    # -- pulls ------------------------------------------------------------------------

    def read_blob(self, name: str, digest: str, buffer: bytearray, verify: bool = False) -> int:
        """GET a blob into ``buffer`` chunk by chunk (overwriting it); the byte count.
        With ``verify``, also hash what arrives and compare with ``digest``."""
        conn = self._connection()
        path = f"/v2/{name}/blobs/{digest}"
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            if response.status != 200:
                data = response.read()
                raise BenchError(f"GET {path}: {response.status} {data[:300]!r}")
            view = memoryview(buffer)
            hasher = hashlib.sha256() if verify else None
            total = 0
            while n := response.readinto(view):
                if hasher is not None:
                    hasher.update(view[:n])
                total += n
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise BenchError(f"GET {path}: {e!r}") from e
        if response.will_close:
            self.close()
        if hasher is not None and "sha256:" + hasher.hexdigest() != digest:
            raise BenchError(f"GET {path}: the bytes do not match the digest")
        return total


def tiny_image(client: Client, name: str, seed: str) -> tuple[bytes, list[str]]:
    """Push a config and one small layer to ``name``; the manifest over them (not yet
    pushed) and the blob digests it references."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        | {"config": {"Env": [f"SEED={seed}"]}},
        sort_keys=True,
    ).encode()
    layer = f"bench layer {seed}\n".encode() * 64
    config_digest = client.push_blob(name, config)
    layer_digest = client.push_blob(name, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER_TAR, "digest": layer_digest, "size": len(layer)}],
    }
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return body, [config_digest, layer_digest]
