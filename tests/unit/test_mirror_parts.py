"""The mirror's small parts: the secret box and its key file, external references, the
upstream client's header parsing, and the Mirror aggregate's schedule (Quay's rules)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from cargohold.adapters.secret_box import (
    AesGcmSecretBox,
    SecretKeyError,
    load_or_create_secret_key,
)
from cargohold.adapters.upstream import HttpUpstream, _challenge, _next_link
from cargohold.domain.clock import HLCTimestamp
from cargohold.domain.context import EventContext
from cargohold.domain.credentials import SecretUnreadable
from cargohold.domain.mirror import (
    MAX_SYNC_RETRIES,
    Mirror,
    MirrorNotDue,
    MirrorSettings,
    SyncLost,
)
from cargohold.domain.upstream import (
    UpstreamRateLimited,
    UpstreamUnauthorized,
    parse_reference,
)
from cargohold.domain.values import Actor, RepositoryName

SITE = uuid.UUID(int=7)


def test_a_sealed_secret_opens_only_with_its_key_and_context() -> None:
    box = AesGcmSecretBox(os.urandom(32))
    sealed = box.seal(b"hunter2-hunter2", "mirror:acme/a")
    assert b"hunter2" not in sealed
    assert sealed != box.seal(b"hunter2-hunter2", "mirror:acme/a")  # a fresh nonce
    assert box.open(sealed, "mirror:acme/a") == b"hunter2-hunter2"
    with pytest.raises(SecretUnreadable):
        box.open(sealed, "mirror:acme/b")
    with pytest.raises(SecretUnreadable):
        AesGcmSecretBox(os.urandom(32)).open(sealed, "mirror:acme/a")
    with pytest.raises(SecretUnreadable):
        box.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), "mirror:acme/a")


def test_the_key_file_is_made_once_private_and_sealed_under_the_cipher_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mirror-key"
    wrapping = os.urandom(32)
    key = load_or_create_secret_key(path, wrapping)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret_key(path, wrapping) == key
    assert b'"sealed"' in path.read_bytes()
    with pytest.raises(SecretKeyError, match="does not open"):
        load_or_create_secret_key(path, os.urandom(32))
    with pytest.raises(SecretKeyError, match="no cipher_key"):
        load_or_create_secret_key(path, None)
    plain = tmp_path / "plain-key"
    assert load_or_create_secret_key(plain, None) == load_or_create_secret_key(plain, None)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("quay.io/org/repo", ("quay.io", "org/repo")),
        ("127.0.0.1:5000/team/app", ("127.0.0.1:5000", "team/app")),
        ("localhost/app", ("localhost", "app")),
        ("alpine", ("registry-1.docker.io", "library/alpine")),
        ("docker.io/alpine", ("registry-1.docker.io", "library/alpine")),
        ("docker.io/bitnami/redis", ("registry-1.docker.io", "bitnami/redis")),
        ("https://ghcr.io/o/r/", ("ghcr.io", "o/r")),
    ],
)
def test_external_references_resolve(reference: str, expected: tuple[str, str]) -> None:
    assert parse_reference(reference) == expected


@pytest.mark.parametrize(
    "reference", ["", "quay.io", "quay.io/", "quay.io/org//r", "q.io/r:v1", "q.io/R"]
)
def test_bad_external_references_are_refused(reference: str) -> None:
    with pytest.raises(ValueError):
        parse_reference(reference)


def test_challenges_and_links_parse() -> None:
    scheme, params = _challenge(
        'Bearer realm="https://auth.example/token",service="reg,istry",scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "reg,istry",
        "scope": "repository:a/b:pull",
    }
    assert _challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    response = httpx.Response(
        200,
        headers={"Link": '</v2/a/tags/list?n=2&last=b>; rel="next"'},
        request=httpx.Request("GET", "http://r.example/v2/a/tags/list?n=2"),
    )
    assert _next_link(response) == "http://r.example/v2/a/tags/list?n=2&last=b"


def test_429_is_retried_after_retry_after_then_reported() -> None:
    waits: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"})

    up = HttpUpstream(
        "r.example", transport=httpx.MockTransport(answer), sleep=waits.append, max_attempts=3
    )
    with pytest.raises(UpstreamRateLimited) as caught:
        up.tags("a/b")
    assert waits == [7.0, 7.0]
    assert caught.value.retry_after == 7.0


def test_refused_credentials_never_show_the_password() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    up = HttpUpstream("r.example", "bob", "s3cret-pass", transport=httpx.MockTransport(answer))
    with pytest.raises(UpstreamUnauthorized) as caught:
        up.tags("a/b")
    assert "s3cret-pass" not in caught.value.message and "s3cret-pass" not in repr(up)
    assert "refused the credentials" in caught.value.message


def _ctx(ms: int) -> EventContext:
    return EventContext(Actor.system(), SITE, HLCTimestamp(ms, 0), "t")


def _mirror(interval_s: int = 3600) -> Mirror:
    settings = MirrorSettings("quay.io/o/r", interval_s, "acme+m", ("v*",))
    return Mirror.configure(RepositoryName("acme/r"), settings, True, 1_000, _ctx(500))


def test_success_moves_the_start_on_the_grid_and_failures_spend_retries() -> None:
    m = _mirror()
    assert not m.due(999) and m.due(1_000)
    claim = uuid.uuid4()
    m.claim_sync(claim, _ctx(2_000))
    with pytest.raises(MirrorNotDue):
        m.claim_sync(uuid.uuid4(), _ctx(2_001))  # a second worker loses
    m.finish(claim, _ctx(3_000))
    assert (m.status, m.next_sync_ms, m.retries) == ("SUCCESS", 3_601_000, MAX_SYNC_RETRIES)
    for left in (2, 1):
        claim = uuid.uuid4()
        m.claim_sync(claim, _ctx(3_700_000))
        m.fail(claim, "upstream down", _ctx(3_700_001))
        assert (m.status, m.retries, m.next_sync_ms) == ("FAIL", left, 3_601_000)
    claim = uuid.uuid4()
    m.claim_sync(claim, _ctx(3_700_000))
    m.fail(claim, "upstream down", _ctx(3_700_002))
    assert (m.retries, m.next_sync_ms) == (MAX_SYNC_RETRIES, 7_201_000)


def test_an_expired_claim_is_taken_over_and_the_old_worker_stops() -> None:
    m = _mirror()
    old = uuid.uuid4()
    m.claim_sync(old, _ctx(2_000))
    assert not m.due(2_000 + 299_000) and m.due(2_000 + 300_000)
    new = uuid.uuid4()
    m.claim_sync(new, _ctx(2_000 + 300_000))
    with pytest.raises(SyncLost):
        m.tag_synced(old, "v1", "sha256:" + "0" * 64, 1, _ctx(302_001))
    m.tag_synced(new, "v1", "sha256:" + "0" * 64, 10, _ctx(302_002))
    assert (m.synced, m.bytes) == (1, 10)
