"""Fuzzing the live ``/v2`` surface of a real ``cargohold serve`` (issue 3, point 4).

One server per module, on a throwaway data dir. Hypothesis sends it requests built from
the spec's vocabulary and its neighbourhood: every method on every endpoint, repository
names, tags, digests (sha256, sha512, unsupported, malformed), ``..`` and percent-encoded
segments, very long segments; ``Content-Type``, ``Content-Range`` and ``Range`` headers
good, malformed, reversed and huge; bodies empty, random, manifest-shaped with bad
descriptors, valid, truncated (a digest declared for more bytes than are sent) and over
the 4 MiB manifest limit; the query parameters of the spec with junk values; and bodies
framed exactly, with a ``Content-Length`` shorter than the body, chunked, or with a
``Content-Length`` longer than what is sent before the client stops writing.

After every request:

- the status is never 5xx, and the server still answers ``/health`` 200;
- a 4xx from the application has an OCI error body whose codes are ones we speak (a 416
  on a blob GET may have an empty body; a HEAD has none);
- a rejected request (4xx, or no answer at all) changed nothing: the event log's last
  rowid, the snapshots, the committed blob files, the staged uploads and their sizes,
  and the upload-session table are all as they were.

A request that gets no answer within ``TIMEOUT`` is a hang, and fails.

The deterministic tests after the fuzzer pin the cases it found and the nastiest ones:
a truncated body must not hold up other requests.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.digests import sha256, sha512
from tests.fixtures.server import Server, serving
from tests.fixtures.services import free_port
from tests.strategies import digests, repository_names, tags

pytestmark = pytest.mark.timeout(600)

EXAMPLES = 1000
TIMEOUT = 30.0
MiB = 1024 * 1024
MAX_MANIFEST = 4 * MiB

OCI_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
        # ours, beyond the spec's table
        "NOT_FOUND",
        "PAGINATION_NUMBER_INVALID",
    }
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


# -- what the server holds before fuzzing: known names and digests to aim at ---------------

KNOWN = "fuzz/known"
OTHER = "fuzz/other"
KNOWN_TAG = "v1"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = bytes(range(256)) * 16


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def image_manifest(**extra: Any) -> bytes:
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, CONFIG),
        "layers": [descriptor(OCI_LAYER, LAYER)],
        **extra,
    }
    return json.dumps(m).encode()


MANIFEST = image_manifest()
KNOWN_DIGESTS = [sha256(CONFIG), sha256(LAYER), sha256(MANIFEST), sha512(LAYER)]

# The placeholder for an upload session started (in KNOWN) just before the request.
UPLOAD = "{live-upload}"


# -- talking HTTP ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: the server closed the connection without answering
    headers: dict[str, str]  # names lower-cased
    body: bytes


def _answer(resp: http.client.HTTPResponse) -> Answer:
    body = resp.read()
    return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)


def call(
    port: int,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    framing: str = "exact",
    cut: int = 1,
) -> Answer:
    """One request on a fresh connection.

    ``framing``: ``exact`` (Content-Length is the body's length), ``short`` (it declares
    ``cut`` bytes fewer than are sent), ``chunked`` (Transfer-Encoding: chunked), or
    ``long`` (it declares ``cut`` bytes more; the client then stops writing).
    """
    headers = dict(headers or {})
    if framing == "long":
        return _call_truncated(port, method, target, body, headers, len(body) + cut)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    with closing(conn):
        if framing == "chunked":
            pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
            conn.request(method, target, body=iter(pieces), headers=headers, encode_chunked=True)
        else:
            if framing == "short":
                headers["Content-Length"] = str(max(len(body) - cut, 0))
            conn.request(method, target, body=body, headers=headers)
        return _answer(conn.getresponse())


def _call_truncated(
    port: int, method: str, target: str, body: bytes, headers: dict[str, str], declared: int
) -> Answer:
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {declared}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed early; read what it said
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return Answer(None, {}, b"")
        with closing(resp):
            return _answer(resp)


# -- what a rejected request must leave alone -------------------------------------------


@dataclass(frozen=True)
class Footprint:
    last_event: int
    snapshots: int
    sessions: int
    blobs: frozenset[str]
    uploads: frozenset[tuple[str, int]]


def _scalar(db: Path, sql: str) -> int:
    with closing(sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)) as c:
        return int(c.execute(sql).fetchone()[0] or 0)


def footprint(data: Path) -> Footprint:
    blobs = frozenset(
        os.path.relpath(os.path.join(d, f), data)
        for d, _, files in os.walk(data / "blobs")
        for f in files
    )
    uploads = set()
    with os.scandir(data / "uploads") as entries:
        for entry in entries:
            try:
                uploads.add((entry.name, os.stat(os.path.join(entry.path, "data")).st_size))
            except FileNotFoundError:
                uploads.add((entry.name, -1))
    return Footprint(
        last_event=_scalar(data / "events.sqlite", "SELECT MAX(rowid) FROM stored_events"),
        snapshots=_scalar(data / "events.sqlite", "SELECT COUNT(*) FROM stored_snapshots"),
        sessions=_scalar(data / "views.sqlite", "SELECT COUNT(*) FROM upload_sessions"),
        blobs=blobs,
        uploads=frozenset(uploads),
    )


def changes(before: Footprint, after: Footprint) -> list[str]:
    out = []
    if after.last_event != before.last_event:
        out.append(f"event log grew: rowid {before.last_event} -> {after.last_event}")
    if after.snapshots != before.snapshots:
        out.append(f"snapshots {before.snapshots} -> {after.snapshots}")
    if after.sessions != before.sessions:
        out.append(f"upload sessions {before.sessions} -> {after.sessions}")
    if after.blobs != before.blobs:
        out.append(f"blob files added {sorted(after.blobs - before.blobs)}")
        out.append(f"blob files removed {sorted(before.blobs - after.blobs)}")
    if after.uploads != before.uploads:
        out.append(f"uploads {sorted(before.uploads ^ after.uploads)}")
    return out


# -- the server ---------------------------------------------------------------------------


@dataclass(repr=False)
class Live:
    server: Server
    port: int
    data: Path
    dirty: bool = True
    seen: collections.Counter[tuple[str, str, int | None]] = field(
        default_factory=collections.Counter
    )

    def __repr__(self) -> str:
        return f"Live({self.server.url})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def call(self, method: str, target: str, body: bytes = b"", **kw: Any) -> Answer:
        return call(self.port, method, target, body, **kw)

    def push_blob(self, name: str, data: bytes) -> None:
        r = self.call("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data)
        assert r.status == 201, r

    def reseed(self) -> None:
        """Make sure the known blobs, manifest and tag exist (a fuzzed DELETE may have
        removed them)."""
        if not self.dirty:
            return
        for name in (KNOWN, OTHER):
            self.push_blob(name, CONFIG)
            self.push_blob(name, LAYER)
            r = self.call(
                "PUT",
                f"/v2/{name}/manifests/{KNOWN_TAG}",
                MANIFEST,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert r.status == 201, r
        self.dirty = False

    def new_upload(self) -> str:
        r = self.call("POST", f"/v2/{KNOWN}/blobs/uploads/")
        assert r.status == 202, r
        return r.headers["location"].rsplit("/", 1)[1]

    def healthy(self) -> None:
        r = self.call("GET", "/health")
        assert r.status == 200, f"/health answers {r.status}: {r.body[:500]!r}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    data = root / "data"
    with serving("--data-dir", str(data), "--listen", f"127.0.0.1:{port}", cwd=root) as server:
        live = Live(server, port, data)
        live.reseed()
        yield live
    if live.seen:
        print(f"\nfuzzed /v2: {sum(live.seen.values())} requests; (method, endpoint, status):")
        for key, count in sorted(live.seen.items(), key=lambda kv: str(kv[0])):
            print(f"  {key}: {count}")


# -- strategies ---------------------------------------------------------------------------


def pct(text: str) -> str:
    return quote(text, safe="")


def pct_bytes(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


huge_number = st.integers(4301, 6000).map(lambda n: "9" * n)  # past int()'s digit limit

junk_segments = st.one_of(
    st.text(max_size=30).map(pct),
    st.binary(min_size=1, max_size=16).map(pct_bytes),
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-._~:@!$&'()*+,;=", max_size=30),
    st.sampled_from(["..", ".", "%2e%2e", "%2E%2E%2F", "%2F", "%00", "%ff", "%", "%zz", "~"]),
    st.integers(256, 8000).map(lambda n: "a" * n),
)

BAD_NAMES = [
    "A",
    "Upper/case",
    "..",
    ".",
    "a/../b",
    "a/./b",
    "a//b",
    "a/",
    "-a",
    "a-",
    "a__",
    "a...b",
    "%2e%2e",
    "a%2Fb",
    "%61",
    "a%00b",
    "a%20b",
    "_catalog",
    "a" * 256,
    "/".join(["a"] * 200),
]
names = st.one_of(
    st.sampled_from([KNOWN, KNOWN, OTHER]),
    repository_names(3).map(str),
    st.sampled_from(BAD_NAMES),
    junk_segments,
)

BAD_DIGESTS = [
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "g" * 64,
    "sha512:" + "a" * 64,
    "sha256:",
    ":" + "a" * 64,
    "sha256",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha384:" + "a" * 96,
    "sha256+b64:YWJj",
    "SHA256:" + "a" * 64,
    "sha256:..%2F..%2F" + "a" * 58,
    "sha256%3A" + "a" * 64,
]
digest_texts = st.one_of(
    st.sampled_from(KNOWN_DIGESTS),
    digests().map(str),
    st.sampled_from(BAD_DIGESTS),
    junk_segments,
)
references = st.one_of(
    st.sampled_from([KNOWN_TAG, "latest"]),
    tags().map(str),
    st.sampled_from([".x", "-x", "a" * 129, "%2e", "x%20y", "%C3%A9", "a:b"]),
    digest_texts,
)
upload_ids = st.one_of(
    st.just(UPLOAD),
    st.just(UPLOAD),
    st.uuids().map(lambda u: u.hex),
    st.sampled_from(["..", ".", "a" * 129, "%2e%2e", "-abc", "_x", "a%2Fb"]),
    junk_segments,
)


# The methods each endpoint answers; an "aimed" request uses one of them, on the known
# repository with a known tag or digest or a live upload, so that it gets past the
# parsers into the handlers; an unaimed one is anything.
ENDPOINTS = {
    "base": ["GET", "HEAD"],
    "catalog": ["GET"],
    "manifest": ["GET", "HEAD", "PUT", "DELETE"],
    "blob": ["GET", "HEAD", "DELETE"],
    "uploads": ["POST"],
    "upload": ["GET", "PATCH", "PUT", "DELETE"],
    "tags": ["GET"],
    "referrers": ["GET"],
    "junk": ["GET"],
}
METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]


@st.composite
def endpoints(draw: st.DrawFn) -> tuple[str, str, str]:
    """(method, endpoint kind, path)."""
    kind = draw(st.sampled_from(list(ENDPOINTS)))
    aimed = draw(st.booleans())
    method = draw(st.sampled_from(ENDPOINTS[kind] if aimed else METHODS))
    if kind == "base":
        return method, kind, "/v2/"
    if kind == "catalog":
        return method, kind, "/v2/_catalog"
    if kind == "junk":
        segments = draw(st.lists(junk_segments, min_size=1, max_size=6))
        return method, kind, "/v2/" + "/".join(segments)
    name = KNOWN if aimed else draw(names)
    known_digests = st.sampled_from(KNOWN_DIGESTS)
    tail = {
        "manifest": lambda: (
            "manifests/"
            + draw(st.sampled_from([KNOWN_TAG, "new", sha256(MANIFEST)]) if aimed else references)
        ),
        "blob": lambda: "blobs/" + draw(known_digests if aimed else digest_texts),
        "uploads": lambda: "blobs/uploads" + draw(st.sampled_from(["/", "", "//"])),
        "upload": lambda: "blobs/uploads/" + (UPLOAD if aimed else draw(upload_ids)),
        "tags": lambda: "tags/list",
        "referrers": lambda: "referrers/" + draw(known_digests if aimed else digest_texts),
    }[kind]()
    return method, kind, f"/v2/{name}/{tail}"


numbers = st.one_of(
    st.integers(-5, 20_000).map(str),
    st.integers(0, 2**80).map(str),
    huge_number,
    st.sampled_from(["", "1e3", "0x10", " 5", "5 ", "+5", "1_000", "²", "٣", "\uff11", "Ⅻ"]),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=3),
)
media_type_texts = st.one_of(
    st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, OCI_CONFIG]),
    st.sampled_from(["application/vnd.example+type", "a/b", "a", "", "*/*", "%%%", "a/b; x=y"]),
    st.text(max_size=20),
)
query_values = st.one_of(numbers, digest_texts, names, media_type_texts, st.text(max_size=20))
queries = st.lists(
    st.tuples(
        st.sampled_from(["digest", "mount", "from", "n", "last", "artifactType", "junk"]),
        query_values,
    ),
    max_size=4,
)

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
content_types = st.one_of(
    st.none(),
    st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, OCI_CONFIG]),
    st.sampled_from(
        [
            "application/octet-stream",
            "application/json",
            "text/plain",
            "a",
            "",
            f"{OCI_MANIFEST}; charset=utf-8",
            "*/*",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ]
    ),
    header_text,
)
bad_content_ranges = st.one_of(
    st.sampled_from(["0-", "-1", "a-b", "5-1", "bytes=0-1", "bytes 0-1/2", "*/10", "0-0", "1-1"]),
    huge_number.map(lambda n: f"0-{n}"),
    huge_number.map(lambda n: f"{n}-{n}"),
    st.builds(lambda a, b: f"{a}-{b}", st.integers(0, 2**70), st.integers(0, 2**70)),
    header_text,
)
ranges = st.one_of(
    st.sampled_from(
        [
            "bytes=0-10",
            "bytes=5-",
            "bytes=-5",
            "bytes=-0",
            "bytes=0-0,5-9",
            "bytes=0-",
            "bytes=x",
            "bytes=10-5",
            "items=0-1",
            "bytes=4096-",
            "bytes=4095-4095",
            "bytes=-",
        ]
    ),
    huge_number.map(lambda n: f"bytes=0-{n}"),
    huge_number.map(lambda n: f"bytes={n}-"),
    huge_number.map(lambda n: f"bytes=-{n}"),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(0, 2**70), st.integers(0, 2**70)),
    header_text,
)

junk_descriptors = st.fixed_dictionaries(
    {
        "mediaType": st.one_of(media_type_texts, st.integers(), st.none()),
        "digest": st.one_of(digest_texts, st.integers(), st.none()),
        "size": st.one_of(
            st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5), st.none()
        ),
    },
    optional={
        "urls": st.lists(st.text(max_size=10), max_size=2),
        "annotations": st.dictionaries(
            st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers()), max_size=2
        ),
        "platform": st.dictionaries(st.sampled_from(["os", "architecture"]), st.text(max_size=5)),
        "artifactType": media_type_texts,
    },
)
descriptors = st.one_of(
    st.just(descriptor(OCI_CONFIG, CONFIG)),
    st.just(descriptor(OCI_LAYER, LAYER)),
    st.just(descriptor(OCI_MANIFEST, MANIFEST)),
    junk_descriptors,
)
junk_manifests = st.fixed_dictionaries(
    {"schemaVersion": st.sampled_from([2, 2, 1, 3, "2", None, 2.0])},
    optional={
        "mediaType": media_type_texts,
        "config": descriptors,
        "layers": st.lists(descriptors, max_size=3),
        "manifests": st.lists(descriptors, max_size=3),
        "subject": descriptors,
        "artifactType": media_type_texts,
        "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    },
).map(lambda m: json.dumps(m).encode())
valid_manifests = st.one_of(
    st.just(MANIFEST),
    st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=2).map(
        lambda a: image_manifest(annotations=a)
    ),
    st.just(image_manifest(subject=descriptor(OCI_MANIFEST, MANIFEST), artifactType="a/b")),
)
oversized = st.integers(1, 64 * 1024).map(
    lambda n: b'{"schemaVersion":2,"pad":"' + b"x" * (MAX_MANIFEST + n) + b'"}'
)


@dataclass(frozen=True)
class Fuzzed:
    method: str
    kind: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body_kind: str
    body: bytes
    framing: str
    cut: int

    def target(self, upload_id: str) -> str:
        path = self.path.replace(UPLOAD, upload_id)
        if not self.query:
            return path
        return path + "?" + urlencode(self.query, quote_via=quote)

    def __repr__(self) -> str:  # NOTE: keeps a 4 MiB body out of failure reports
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return (
            f"Fuzzed({self.method} {self.path[:300]} query={self.query!r} "
            f"headers={self.headers!r} body[{self.body_kind}, {len(self.body)} bytes]={body!r} "
            f"framing={self.framing} cut={self.cut})"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis prints through this
        p.text(repr(self))


@st.composite
def fuzzed_requests(draw: st.DrawFn) -> Fuzzed:
    method, kind, path = draw(endpoints())
    query = list(draw(queries))
    body_kind = draw(
        st.sampled_from(
            [
                "empty",
                "random",
                "known",
                "digested",
                "truncated",
                "junk-manifest",
                "manifest",
                "oversized",
            ]
        )
    )
    body: bytes
    if body_kind == "empty":
        body = b""
    elif body_kind == "random":
        body = draw(st.binary(max_size=4096))
    elif body_kind == "known":
        body = draw(st.sampled_from([CONFIG, LAYER, MANIFEST]))
    elif body_kind == "digested":  # a body and its true digest: a push that may succeed
        body = draw(st.binary(max_size=4096))
        query.append(("digest", draw(st.sampled_from([sha256, sha512]))(body)))
    elif body_kind == "truncated":  # a digest declared for more bytes than are sent
        content = draw(st.binary(min_size=1, max_size=4096))
        body = content[: draw(st.integers(0, len(content) - 1))]
        query.append(("digest", sha256(content)))
    elif body_kind == "junk-manifest":
        body = draw(junk_manifests)
    elif body_kind == "manifest":
        body = draw(valid_manifests)
    else:
        body = draw(oversized)
    headers: dict[str, str] = {}
    content_type = draw(content_types)
    if content_type is not None:
        headers["Content-Type"] = content_type
    content_range = draw(st.sampled_from(["none", "none", "good", "bad"]))
    if content_range == "good" and body:
        headers["Content-Range"] = draw(
            st.sampled_from([f"0-{len(body) - 1}", f"bytes 0-{len(body) - 1}"])
        )
    elif content_range == "bad":
        headers["Content-Range"] = draw(bad_content_ranges)
    if draw(st.booleans()):
        headers["Range"] = draw(ranges)
    framing = draw(st.sampled_from(["exact"] * 5 + ["short", "chunked", "long"]))
    cut = draw(st.integers(1, 1 << 20)) if framing == "long" else draw(st.integers(1, 64))
    return Fuzzed(
        method, kind, path, tuple(query), tuple(headers.items()), body_kind, body, framing, cut
    )


# -- the properties -------------------------------------------------------------------------


def assert_oci_error(request: Fuzzed, answer: Answer) -> None:
    assert answer.status is not None
    if "docker-distribution-api-version" not in answer.headers:
        # NOTE: waitress refused the HTTP message itself (a broken chunk, a body over the
        # limit) before the application saw it; it answers in plain text.
        assert answer.status in (400, 413, 431), (answer, request)
        assert b"(generated by cargohold)" in answer.body, (answer, request)
        return
    if request.method == "HEAD":
        return
    if answer.status == 416 and request.kind == "blob" and not answer.body:
        return
    try:
        errors = json.loads(answer.body)["errors"]
    except (ValueError, KeyError, TypeError) as e:
        raise AssertionError(f"{answer.status} without an OCI body: {answer} for {request}") from e
    assert isinstance(errors, list) and errors, (answer, request)
    for error in errors:
        assert error.get("code") in OCI_CODES, (answer, request)


def exercise(live: Live, request: Fuzzed) -> Answer:
    live.reseed()
    upload_id = live.new_upload() if UPLOAD in request.path else "none"
    before = footprint(live.data)
    target = request.target(upload_id)
    try:
        answer = live.call(
            request.method,
            target,
            request.body,
            headers=dict(request.headers),
            framing=request.framing,
            cut=request.cut,
        )
    except TimeoutError as e:
        raise AssertionError(f"no answer within {TIMEOUT}s (a hang) to {request}") from e
    live.seen[(request.method, request.kind, answer.status)] += 1
    assert answer.status is None or answer.status < 500, (
        f"{answer.status} {answer.body[:300]!r} for {request}"
    )
    live.healthy()
    rejected = answer.status is None or 400 <= answer.status < 500
    if rejected:
        changed = changes(before, footprint(live.data))
        assert not changed, f"rejected ({answer.status}) but wrote: {changed} by {request}"
    if answer.status is not None and 400 <= answer.status < 500:
        assert_oci_error(request, answer)
    if answer.status is not None and 200 <= answer.status < 300 and request.method != "GET":
        live.dirty = True
    return answer


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(request=fuzzed_requests())
def test_fuzzed_requests_never_break_the_server_or_write_when_rejected(
    live: Live, request: Fuzzed
) -> None:
    exercise(live, request)


# -- deterministic: the nastiest cases, and what the fuzzer found -----------------------------


def _open_truncated(port: int, request_line: str, declared: int, sent: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(
        f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n\r\n".encode()
        + sent
    )
    return sock


def _finish_truncated(sock: socket.socket) -> bytes:
    """Stop writing; return whatever the server sends before it closes."""
    with sock:
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_truncated_body_neither_holds_up_other_requests_nor_writes(live: Live) -> None:
    live.reseed()
    content = os.urandom(256 * 1024)
    upload_id = live.new_upload()
    # A monolithic POST and a PATCH that declare more than they send, and stay open.
    stalled = [
        _open_truncated(
            live.port,
            f"POST /v2/{KNOWN}/blobs/uploads/?digest={sha256(content)}",
            len(content),
            content[:1000],
        ),
        _open_truncated(
            live.port,
            f"PATCH /v2/{KNOWN}/blobs/uploads/{upload_id}",
            len(content),
            content[:1000],
        ),
    ]
    try:
        time.sleep(0.5)
        # Everyone else is served meanwhile, promptly.
        started = time.monotonic()
        assert live.call("GET", "/v2/").status == 200
        live.healthy()
        other = os.urandom(1000)
        live.push_blob(OTHER, other)
        assert live.call("GET", f"/v2/{OTHER}/blobs/{sha256(other)}").body == other
        assert live.call("GET", f"/v2/{KNOWN}/blobs/uploads/{upload_id}").status == 204
        assert time.monotonic() - started < 5
        before = footprint(live.data)
    finally:
        answers = [_finish_truncated(sock) for sock in stalled]
    for received in answers:
        # The server may answer (4xx) or simply close; never 5xx.
        assert received == b"" or received.split(b" ", 2)[1][:1] == b"4", received[:300]
    live.healthy()
    assert not changes(before, footprint(live.data))
    assert live.call("HEAD", f"/v2/{KNOWN}/blobs/{sha256(content)}").status == 404
    r = live.call("GET", f"/v2/{KNOWN}/blobs/uploads/{upload_id}")
    assert r.status == 204 and r.headers["range"] == "0-0"


def test_a_declared_length_over_the_limit_is_refused_at_once(live: Live) -> None:
    before = footprint(live.data)
    sock = _open_truncated(
        live.port, f"POST /v2/{KNOWN}/blobs/uploads/?digest={sha256(b'x')}", 2**40 * 100, b"x"
    )
    received = _finish_truncated(sock)
    assert received.startswith(b"HTTP/1.1 413 "), received[:300]
    assert not changes(before, footprint(live.data))


@pytest.mark.parametrize(
    ("method", "target", "headers", "statuses"),
    [
        # int() refuses a string of more than 4300 digits: the parsers must not pass one.
        ("GET", "/v2/_catalog?n=" + "9" * 5000, {}, {200, 400}),
        ("GET", f"/v2/{KNOWN}/tags/list?n=" + "9" * 5000, {}, {200, 400}),
        ("GET", f"/v2/{KNOWN}/blobs/{sha256(LAYER)}", {"Range": "bytes=0-" + "9" * 5000}, {206}),
        ("GET", f"/v2/{KNOWN}/blobs/{sha256(LAYER)}", {"Range": f"bytes={'9' * 5000}-"}, {416}),
        ("GET", f"/v2/{KNOWN}/blobs/{sha256(LAYER)}", {"Range": f"bytes=-{'9' * 5000}"}, {206}),
        ("PATCH", UPLOAD, {"Content-Range": "0-" + "9" * 5000}, {416}),
        ("PATCH", UPLOAD, {"Content-Range": f"{'9' * 5000}-{'9' * 5000}"}, {416}),
        # "²".isdigit() is True, but int("²") raises.
        ("GET", "/v2/_catalog?n=%C2%B2", {}, {400}),
        ("GET", f"/v2/{KNOWN}/tags/list?n=%C2%B2", {}, {400}),
    ],
    ids=[
        "catalog-n-5000-digits",
        "tags-n-5000-digits",
        "range-end-5000-digits",
        "range-start-5000-digits",
        "range-suffix-5000-digits",
        "content-range-end-5000-digits",
        "content-range-both-5000-digits",
        "catalog-n-superscript-two",
        "tags-n-superscript-two",
    ],
)
def test_numbers_no_parser_can_take_are_client_errors(
    live: Live, method: str, target: str, headers: dict[str, str], statuses: set[int]
) -> None:
    live.reseed()
    if target == UPLOAD:
        target = f"/v2/{KNOWN}/blobs/uploads/{live.new_upload()}"
    kind = "blob" if "/blobs/sha" in target else "other"
    request = Fuzzed(method, kind, target, (), tuple(headers.items()), "empty", b"", "exact", 1)
    answer = exercise(live, request)
    assert answer.status in statuses, answer


def test_a_rejected_manifest_commits_no_blob(live: Live) -> None:
    live.reseed()
    missing = os.urandom(32)
    body = image_manifest(layers=[descriptor(OCI_LAYER, missing)])
    request = Fuzzed(
        "PUT",
        "manifest",
        f"/v2/{KNOWN}/manifests/orphan",
        (),
        (("Content-Type", OCI_MANIFEST),),
        "manifest",
        body,
        "exact",
        1,
    )
    answer = exercise(live, request)
    assert answer.status == 400
    assert json.loads(answer.body)["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


def test_a_rejected_closing_put_leaves_the_upload_as_it_was(live: Live) -> None:
    live.reseed()
    upload_id = live.new_upload()
    location = f"/v2/{KNOWN}/blobs/uploads/{upload_id}"
    assert live.call("PATCH", location, b"abc").status == 202
    wrong = sha256(b"something else")
    request = Fuzzed(
        "PUT", "upload", location, (("digest", wrong),), (), "random", b"defg", "exact", 1
    )
    answer = exercise(live, request)
    assert answer.status == 400
    r = live.call("GET", location)
    assert r.status == 204 and r.headers["range"] == "0-2"


@pytest.mark.parametrize("segment", ["%0A", "a%0A", "%0D%0A", "a/b%0A"])
def test_a_name_with_a_line_break_is_answered_in_oci_form(live: Live, segment: str) -> None:
    request = Fuzzed(
        "GET", "manifest", f"/v2/{segment}/manifests/v1", (), (), "empty", b"", "exact", 1
    )
    answer = exercise(live, request)
    assert answer.status in (400, 404)
