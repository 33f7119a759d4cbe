"""Manifests: ``/v2/<name>/manifests/<reference>``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime

import falcon

from cargohold.commands.pull_through import PullThrough
from cargohold.commands.registry import RegistryService
from cargohold.domain.errors import ManifestUnknown, ReferenceInvalid, RepositoryUnknown
from cargohold.domain.ports import AccessRecord, AccessRecorder, BlobStore
from cargohold.domain.values import Digest, RepositoryName, Tag, parse_reference
from cargohold.http.registry_v2 import headers as h
from cargohold.http.registry_v2.context import caller_of
from cargohold.http.registry_v2.errors import V2Error
from cargohold.projections.queries import ManifestRow, RegistryQueries

# The distribution spec asks registries to accept manifests of at least 4 MiB.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Manifest bodies kept in memory per worker process.
BODY_CACHE_BYTES = 32 * 1024 * 1024


class ManifestBodies:
    """Manifest bodies by digest, least recently used out past ``max_bytes``.

    PERF: a manifest's bytes never change under its digest (they were verified against
    it when pushed), so a cached body needs no validation; the views still decide, per
    request, whether the repository has the manifest. Saves a stat, an open and a read
    of the blob store per GET.
    """

    def __init__(self, max_bytes: int = BODY_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[Digest, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, digest: Digest) -> bytes | None:
        with self._lock:
            body = self._bodies.get(digest)
            if body is not None:
                self._bodies.move_to_end(digest)
            return body

    def put(self, digest: Digest, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return
        with self._lock:
            if digest in self._bodies:
                return
            self._bodies[digest] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self._bytes -= len(dropped)


class ManifestResource:
    """``pulls`` records a ``pull_repo`` entry for every manifest GET (the audit log);
    ``pull_through`` first brings a cache organisation's repository up to date with its
    upstream for the reference asked (``commands/pull_through.py``)."""

    def __init__(
        self,
        registry: RegistryService,
        queries: RegistryQueries,
        blobs: BlobStore,
        pulls: AccessRecorder,
        pull_through: PullThrough | None = None,
    ) -> None:
        self.registry = registry
        self.pull_through = pull_through
        self.queries = queries
        self.blobs = blobs
        self.pulls = pulls
        self.bodies = ManifestBodies()

    def _find(self, repo: RepositoryName, reference: str) -> ManifestRow:
        try:
            ref = parse_reference(reference)
        except ReferenceInvalid:
            # NOTE: a reference off the grammar names nothing that could exist: for reads
            # that is 404 MANIFEST_UNKNOWN (as the v1.1.1 conformance suite expects); a
            # PUT of one is still rejected as invalid.
            ref = None
        q = self.queries
        if ref is None:
            if not q.repository_exists(repo):
                raise RepositoryUnknown(f"repository {repo} is not known")
            raise ManifestUnknown(f"manifest {reference[:200]!r} is not in repository {repo}")
        row = q.manifest(repo, ref) if isinstance(ref, Digest) else q.tagged_manifest(repo, ref)
        if row is None:
            if not q.repository_exists(repo):
                raise RepositoryUnknown(f"repository {repo} is not known")
            raise ManifestUnknown(f"manifest {reference} is not in repository {repo}")
        return row

    def _describe(self, resp: falcon.Response, row: ManifestRow) -> None:
        resp.content_type = row.media_type
        resp.content_length = row.size
        resp.set_header("Docker-Content-Digest", str(row.digest))
        resp.set_header("ETag", f'"{row.digest}"')

    def on_head(
        self, req: falcon.Request, resp: falcon.Response, name: str, reference: str
    ) -> None:
        repo = RepositoryName(name)
        if self.pull_through is not None:
            self.pull_through.manifest(repo, reference, caller_of(req))
        self._describe(resp, self._find(repo, reference))

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, reference: str) -> None:
        repo = RepositoryName(name)
        if self.pull_through is not None:
            self.pull_through.manifest(repo, reference, caller_of(req))
        row = self._find(repo, reference)
        body = self.bodies.get(row.digest)
        if body is None:
            body = b"".join(self.blobs.read(row.digest))
            self.bodies.put(row.digest, body)
        self._describe(resp, row)
        resp.data = body
        self._record_pull(req, repo, reference, row)

    def _record_pull(
        self, req: falcon.Request, repo: RepositoryName, reference: str, row: ManifestRow
    ) -> None:
        """A ``pull_repo`` entry for the audit log (buffered: costs no database write)."""
        caller = caller_of(req)
        namespace, _, short = repo.partition("/")
        metadata: dict[str, str] = {"namespace": namespace, "repo": short}
        if reference != str(row.digest):
            metadata["tag"] = reference
        metadata["manifest_digest"] = str(row.digest)
        self.pulls.record(
            AccessRecord(
                kind="pull_repo",
                at=datetime.now(UTC),
                performer=caller.actor,
                namespace=namespace,
                repository=str(repo),
                ip=caller.client_address,
                request_id=caller.request_id,
                metadata=metadata,
            )
        )

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str, reference: str) -> None:
        repo = RepositoryName(name)
        ref = parse_reference(reference)
        if req.content_length is not None and req.content_length > MAX_MANIFEST_BYTES:
            raise V2Error(
                falcon.HTTP_413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST_BYTES} bytes"
            )
        body = req.bounded_stream.read(MAX_MANIFEST_BYTES + 1)
        if len(body) > MAX_MANIFEST_BYTES:
            raise V2Error(
                falcon.HTTP_413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST_BYTES} bytes"
            )
        manifest = self.registry.push_manifest(repo, ref, body, req.content_type, caller_of(req))
        resp.status = falcon.HTTP_201
        resp.content_length = 0
        resp.set_header("Location", h.manifest_location(repo, manifest.digest))
        resp.set_header("Docker-Content-Digest", str(manifest.digest))
        if manifest.subject is not None:
            resp.set_header("OCI-Subject", str(manifest.subject.digest))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, name: str, reference: str
    ) -> None:
        repo = RepositoryName(name)
        ref = parse_reference(reference)
        if isinstance(ref, Tag):
            self.registry.untag(repo, ref, caller_of(req))
        else:
            self.registry.delete_manifest(repo, ref, caller_of(req))
        resp.status = falcon.HTTP_202
        resp.content_length = 0
