"""The upstream-registry port over HTTP: the distribution protocol as a client, with httpx.

``HttpUpstream`` is one upstream registry. It speaks what registries in the wild ask of a
puller:

- **auth**: anonymous first; a ``401`` with ``WWW-Authenticate: Basic`` is answered with
  the credentials, one with ``Bearer realm=..,service=..,scope=..`` by a token from the
  realm (the Docker token spec: a GET with Basic credentials when there are any,
  anonymous otherwise). Tokens are cached per scope until shortly before ``expires_in``;
  a token refused later is dropped and fetched once more.
- **backoff**: ``429`` waits for ``Retry-After`` (seconds or an HTTP date, capped at
  ``max_wait``) or an exponential backoff, connection errors and ``5xx`` back off the same
  way; after ``max_attempts`` they raise ``UpstreamRateLimited`` / ``UpstreamUnavailable``.
- **content**: manifests are fetched with every OCI and Docker manifest and index type in
  ``Accept``, capped at 4 MiB, their digest checked against the one asked for and the
  ``Docker-Content-Digest`` header; blobs are streamed in chunks and hashed as they pass,
  the iterator raising ``UpstreamInvalid`` at its end when size or digest differ; a
  redirect to another host (object storage) is followed without the ``Authorization``
  header (httpx drops it on a cross-origin redirect).
- **paging**: the tags list follows ``Link: <...>; rel="next"`` to its end.
- **transport**: ``https``; with ``verify_tls=False`` certificates are not checked and a
  registry that does not speak TLS at all is reached over plain ``http`` (skopeo's
  ``--tls-verify=false``). A ``proxy`` is Quay's ``{http_proxy, https_proxy, no_proxy}``.

Nothing here logs; no message, exception or ``repr`` holds the password or a token.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from cargohold.domain.errors import DigestInvalid, DigestUnsupported
from cargohold.domain.manifest import MANIFEST_MEDIA_TYPES
from cargohold.domain.upstream import (
    UpstreamBlob,
    UpstreamError,
    UpstreamInvalid,
    UpstreamManifest,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from cargohold.domain.values import Digest

#: The largest manifest accepted from an upstream (the distribution registry's own limit).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Blob chunks as they are read off the wire.
CHUNK_BYTES = 1024 * 1024

_ACCEPT = ", ".join(sorted(MANIFEST_MEDIA_TYPES))
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
# A token is renewed this long before its server said it expires.
_TOKEN_SLACK_S = 10.0


@dataclass
class _Token:
    value: str
    expires_at: float


class HttpUpstream:
    """One upstream registry (see the module docstring); implements
    ``domain.upstream.UpstreamRegistry``. Thread-safe as far as httpx's client is; the
    token cache tolerates races (the worst case is a token fetched twice)."""

    def __init__(
        self,
        registry: str,
        username: str | None = None,
        password: str | None = None,
        *,
        verify_tls: bool = True,
        proxy: dict[str, str | None] | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        page_size: int = 1000,
    ) -> None:
        self.registry = registry
        self._credentials = (username, password) if username else None
        self._verify_tls = verify_tls
        self._max_attempts = max(1, max_attempts)
        self._max_wait = max_wait
        self._sleep = sleep
        self._page_size = page_size
        self._tokens: dict[str, _Token] = {}
        # Whether the registry answered a Basic challenge: then send Basic up front.
        self._basic = False
        self._base: str | None = None
        self._client = httpx.Client(
            verify=verify_tls,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            transport=transport,
            mounts=_proxy_mounts(proxy, verify_tls) if proxy and transport is None else None,
            headers={"User-Agent": "cargohold-mirror"},
        )

    def __repr__(self) -> str:
        user = self._credentials[0] if self._credentials else None
        return f"HttpUpstream({self.registry!r}, username={user!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the port ------------------------------------------------------------------------

    def ping(self) -> bool:
        url = self._url("/v2/")
        try:
            response = self._client.get(url)
            if response.status_code == 401 and self._credentials is not None:
                scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
                if scheme == "basic":
                    auth = _basic_header(*self._credentials)
                elif scheme == "bearer" and params.get("realm"):
                    auth = f"Bearer {self._fetch_token(params, '').value}"
                else:
                    raise UpstreamError(f"{self.registry}: an unknown login challenge", 401)
                response = self._client.get(url, headers={"Authorization": auth})
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"{self.registry} is unreachable: {_why(exc)}") from None
        status = response.status_code
        if status < 300:
            return True
        if status == 401 and self._credentials is None:
            return False
        raise self._refusal(response, "GET", "/v2/")

    def check(self, repository: str) -> None:
        with self._send("GET", f"/v2/{repository}/tags/list?n=1", repository) as response:
            response.read()

    def tags(self, repository: str) -> list[str]:
        tags: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n={self._page_size}"
        seen: set[str] = set()
        while path is not None and path not in seen:
            seen.add(path)
            with self._send("GET", path, repository) as response:
                doc = _json(response, "tags list", 16 * 1024 * 1024)
                page = doc.get("tags") or []
                if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                    raise UpstreamInvalid(
                        f"{self.registry}: the tags list of {repository} is malformed"
                    )
                tags.extend(page)
                path = _next_link(response)
        return list(dict.fromkeys(tags))

    def manifest(self, repository: str, reference: str) -> UpstreamManifest:
        asked = _digest_or_none(reference)
        what = (
            f"manifest {repository}:{reference}"
            if asked is None
            else f"manifest {repository}@{reference}"
        )
        headers = {"Accept": _ACCEPT}
        with self._send(
            "GET", f"/v2/{repository}/manifests/{reference}", repository, headers
        ) as response:
            body = _read_capped(response, MAX_MANIFEST_BYTES, f"{self.registry}: {what}")
            media_type = _media_type(response, body)
            header = response.headers.get("Docker-Content-Digest")
        algorithm = asked.algorithm if asked else None
        if algorithm is None and header:
            claimed = _digest_or_none(header)
            algorithm = claimed.algorithm if claimed else None
        digest = Digest.of(body, algorithm) if algorithm else Digest.of(body)
        if asked is not None and digest != asked:
            raise UpstreamInvalid(f"{self.registry}: {what} has digest {digest}")
        if header and _digest_or_none(header) not in (None, digest) and asked is None:
            raise UpstreamInvalid(
                f"{self.registry}: {what} has digest {digest}, not the {header} its header names"
            )
        return UpstreamManifest(body=body, media_type=media_type, digest=digest)

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        headers = {"Accept": _ACCEPT}
        try:
            with self._send(
                "HEAD", f"/v2/{repository}/manifests/{reference}", repository, headers
            ) as r:
                header = r.headers.get("Docker-Content-Digest")
        except UpstreamNotFound:
            return None
        digest = _digest_or_none(header) if header else None
        if digest is None:
            # A registry that does not name the digest on HEAD: fetch and hash.
            try:
                return self.manifest(repository, reference).digest
            except UpstreamNotFound:
                return None
        return digest

    @contextmanager
    def blob(self, repository: str, digest: Digest) -> Iterator[UpstreamBlob]:
        what = f"{self.registry}: blob {digest} of {repository}"
        with self._send("GET", f"/v2/{repository}/blobs/{digest}", repository) as response:
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else -1
            yield UpstreamBlob(size=size, chunks=self._verified(response, digest, size, what))

    # -- streaming -----------------------------------------------------------------------

    @staticmethod
    def _verified(
        response: httpx.Response, digest: Digest, size: int, what: str
    ) -> Iterator[bytes]:
        hasher = hashlib.new(digest.algorithm.value)
        seen = 0
        try:
            for chunk in (
                response.iter_raw(CHUNK_BYTES)
                if _identity(response)
                else response.iter_bytes(CHUNK_BYTES)
            ):
                hasher.update(chunk)
                seen += len(chunk)
                yield chunk
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"{what}: the connection broke after {seen} bytes ({_why(exc)})"
            ) from None
        if size >= 0 and seen != size:
            raise UpstreamInvalid(f"{what}: {seen} bytes arrived, {size} were announced")
        if hasher.hexdigest() != digest.hex:
            raise UpstreamInvalid(f"{what}: the bytes do not match the digest")

    # -- requests, auth and backoff ------------------------------------------------------

    @contextmanager
    def _send(
        self, method: str, path: str, repository: str, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """The response to ``method path`` (an absolute URL or a path on the registry),
        authenticated for pulling ``repository``, after the retries; an ``UpstreamError``
        for anything but 2xx. The body is left to the caller (streamed)."""
        scope = f"repository:{repository}:pull"
        url = path if path.startswith(("http://", "https://")) else self._url(path)
        reauthenticated = False
        attempt = 0
        while True:
            attempt += 1
            request = self._client.build_request(method, url, headers=self._auth(scope, headers))
            try:
                response = self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                if attempt >= self._max_attempts:
                    raise UpstreamUnavailable(
                        f"{self.registry} is unreachable: {_why(exc)}"
                    ) from None
                self._sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status < 300:
                try:
                    yield response
                finally:
                    response.close()
                return
            response.read()
            response.close()
            if status == 401 and not reauthenticated:
                reauthenticated = True
                self._tokens.pop(scope, None)
                if self._answer_challenge(response, scope):
                    attempt -= 1
                    continue
            if status == 429 or status in _RETRY_STATUSES:
                wait = self._retry_after(response, attempt)
                if attempt < self._max_attempts:
                    self._sleep(wait)
                    continue
                if status == 429:
                    raise UpstreamRateLimited(
                        f"{self.registry} is rate-limiting ({attempt} tries of {method} {path})",
                        _retry_after_header(response),
                    )
                raise UpstreamUnavailable(
                    f"{self.registry} answered {status} to {method} {path}", status
                )
            raise self._refusal(response, method, path)

    def _url(self, path: str) -> str:
        if self._base is None:
            self._base = self._probe()
        return self._base + path

    def _probe(self) -> str:
        """``https://host``, or ``http://host`` when TLS is not verified and the registry
        does not speak it."""
        https = f"https://{self.registry}"
        if self._verify_tls:
            return https
        try:
            self._client.get(f"{https}/v2/", timeout=5.0).close()
            return https
        except httpx.TransportError:
            return f"http://{self.registry}"

    def _auth(self, scope: str, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        token = self._tokens.get(scope)
        if token is not None and token.expires_at > time.monotonic():
            out["Authorization"] = f"Bearer {token.value}"
        elif self._basic and self._credentials:
            out["Authorization"] = _basic_header(*self._credentials)
        return out

    def _answer_challenge(self, response: httpx.Response, scope: str) -> bool:
        """Get what a retry needs to pass the 401's challenge; False when there is
        nothing more to try (the refusal is then final)."""
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self._credentials is None or self._basic:
                return False
            self._basic = True
            return True
        if scheme == "bearer" and params.get("realm"):
            self._tokens[scope] = self._fetch_token(params, scope)
            return True
        return False

    def _fetch_token(self, params: dict[str, str], scope: str) -> _Token:
        query = {"scope": scope} if scope else {}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {}
        if self._credentials:
            headers["Authorization"] = _basic_header(*self._credentials)
        realm = params["realm"]
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self._client.get(realm, params=query, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self._max_attempts:
                    raise UpstreamUnavailable(
                        f"the token server of {self.registry} is unreachable: {_why(exc)}"
                    ) from None
                self._sleep(self._backoff(attempt))
                continue
            if response.status_code in (401, 403):
                who = "the credentials" if self._credentials else "anonymous access"
                raise UpstreamUnauthorized(
                    f"the token server of {self.registry} refused {who}", response.status_code
                )
            if response.status_code == 429 or response.status_code in _RETRY_STATUSES:
                if attempt == self._max_attempts:
                    raise UpstreamUnavailable(
                        f"the token server of {self.registry} answered {response.status_code}",
                        response.status_code,
                    )
                self._sleep(self._retry_after(response, attempt))
                continue
            if response.status_code >= 300:
                raise UpstreamError(
                    f"the token server of {self.registry} answered {response.status_code}",
                    response.status_code,
                )
            try:
                doc = response.json()
            except ValueError:
                doc = None
            value = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
            if not isinstance(value, str) or not value:
                raise UpstreamInvalid(f"the token server of {self.registry} sent no token")
            expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
            lifetime = (
                float(expires_in)
                if isinstance(expires_in, int | float) and expires_in > 0
                else 60.0
            )
            return _Token(value, time.monotonic() + max(1.0, lifetime - _TOKEN_SLACK_S))
        raise AssertionError("unreachable")

    def _refusal(self, response: httpx.Response, method: str, path: str) -> UpstreamError:
        status = response.status_code
        detail = _error_message(response)
        where = f"{self.registry}: {method} {path.split('?')[0]}"
        if status == 404:
            return UpstreamNotFound(f"{where}: not found{detail}", status)
        if status in (401, 403):
            who = "the credentials" if self._credentials else "anonymous access"
            return UpstreamUnauthorized(
                f"{where}: the upstream refused {who} ({status}){detail}", status
            )
        return UpstreamError(f"{where}: {status}{detail}", status)

    def _backoff(self, attempt: int) -> float:
        return float(min(self._max_wait, 0.5 * 2 ** (attempt - 1)))

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        asked = _retry_after_header(response)
        return min(self._max_wait, asked) if asked is not None else self._backoff(attempt)


# -- helpers ----------------------------------------------------------------------------


def _proxy_mounts(
    proxy: dict[str, str | None], verify: bool
) -> dict[str, httpx.BaseTransport | None]:
    mounts: dict[str, httpx.BaseTransport | None] = {}
    if proxy.get("http_proxy"):
        mounts["http://"] = httpx.HTTPTransport(proxy=proxy["http_proxy"], verify=verify)
    if proxy.get("https_proxy"):
        mounts["https://"] = httpx.HTTPTransport(proxy=proxy["https_proxy"], verify=verify)
    for host in (proxy.get("no_proxy") or "").split(","):
        host = host.strip()
        if host:
            mounts[f"all://{host}"] = None
    return mounts


def _basic_header(username: str | None, password: str | None) -> str:
    pair = f"{username or ''}:{password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """The scheme (lower case) and parameters of a ``WWW-Authenticate`` header."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().strip(",").strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            value = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            value = rest[i:end].strip()
            i = end
        params[key] = value
        while i < len(rest) and rest[i] in ", ":
            i += 1
    return scheme.lower(), params


def _retry_after_header(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _next_link(response: httpx.Response) -> str | None:
    header = response.headers.get("Link")
    if not header:
        return None
    for part in header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return str(urljoin(str(response.url), target.strip().strip("<>")))
    return None


def _digest_or_none(text: str | None) -> Digest | None:
    if not text:
        return None
    try:
        return Digest.parse(text.strip())
    except (DigestInvalid, DigestUnsupported):
        return None


def _identity(response: httpx.Response) -> bool:
    return response.headers.get("Content-Encoding", "identity") in ("", "identity")


def _read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise UpstreamInvalid(f"{what} is larger than {limit} bytes")
            parts.append(chunk)
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(f"{what}: the connection broke ({_why(exc)})") from None
    return b"".join(parts)


def _json(response: httpx.Response, what: str, limit: int) -> dict[str, Any]:
    body = _read_capped(response, limit, what)
    try:
        doc = json.loads(body)
    except ValueError:
        raise UpstreamInvalid(f"the {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise UpstreamInvalid(f"the {what} is not a JSON object")
    return doc


def _media_type(response: httpx.Response, body: bytes) -> str:
    given: str = response.headers.get("Content-Type", "").split(";")[0].strip()
    if given and given != "application/json":
        return given
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    return declared if isinstance(declared, str) and declared else given


def _error_message(response: httpx.Response) -> str:
    """``": <message>"`` from an OCI error body, or ``""``."""
    try:
        doc = response.json()
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message") or errors[0].get("code")
            if isinstance(message, str) and message:
                return f": {message[:200]}"
    except (ValueError, UnicodeDecodeError):
        pass
    return ""


def _why(exc: Exception) -> str:
    return type(exc).__name__ + (f" ({exc})" if str(exc) else "")
