"""The credential adapters: argon2id, hashed tokens, ES256 JWTs, the key file, throttling."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cargohold.adapters.login_throttle import MemoryLoginThrottle
from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.adapters.tokens import (
    HashedTokenMinter,
    JWTSigner,
    SigningKeyError,
    libtrust_key_id,
    load_or_create_signing_key,
)
from cargohold.domain.errors import CredentialInvalid, DomainError, TokenInvalid


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- passwords ---------------------------------------------------------------------------


def test_password_round_trip() -> None:
    hasher = Argon2PasswordHasher.cheap()
    stored = hasher.hash("correct horse")
    assert stored.startswith("$argon2id$")
    assert hasher.verify("correct horse", stored)
    assert not hasher.needs_rehash(stored)


def test_wrong_password_and_corrupt_hash_are_no() -> None:
    hasher = Argon2PasswordHasher.cheap()
    stored = hasher.hash("correct horse")
    assert not hasher.verify("correct horsf", stored)
    assert not hasher.verify("correct horse", "not-a-hash")
    assert not hasher.verify("correct horse", "")
    assert hasher.needs_rehash("not-a-hash")


def test_hash_is_salted_and_never_contains_the_password() -> None:
    hasher = Argon2PasswordHasher.cheap()
    password = "s3cret-passw0rd"
    first, second = hasher.hash(password), hasher.hash(password)
    assert first != second
    for stored in (first, second):
        assert password not in stored
        assert base64.b64encode(password.encode()).decode().rstrip("=") not in stored


def test_needs_rehash_after_parameter_change() -> None:
    stored = Argon2PasswordHasher.cheap().hash("pw")
    stronger = Argon2PasswordHasher(time_cost=2, memory_cost_kib=16, parallelism=1)
    assert stronger.needs_rehash(stored)
    assert stronger.verify("pw", stored)  # old hashes keep working until re-hashed
    assert not stronger.needs_rehash(stronger.hash("pw"))


def test_empty_password_is_refused() -> None:
    with pytest.raises(CredentialInvalid):
        Argon2PasswordHasher.cheap().hash("")


# -- opaque tokens -----------------------------------------------------------------------


def test_minted_tokens_are_unique_prefixed_and_stored_as_sha256_hex() -> None:
    minter = HashedTokenMinter()
    pairs = [minter.mint() for _ in range(200)]
    tokens = {token for token, _ in pairs}
    assert len(tokens) == 200
    for token, stored in pairs:
        assert token.startswith("chk_")
        assert len(token) >= 4 + 43  # 32 bytes of urlsafe base64
        assert len(stored) == 64 and int(stored, 16) >= 0
        assert token not in stored
        assert minter.verify(token, stored)


def test_wrong_token_is_refused() -> None:
    minter = HashedTokenMinter()
    token, stored = minter.mint()
    other, _ = minter.mint()
    assert not minter.verify(other, stored)
    assert not minter.verify(token[:-1], stored)
    assert not minter.verify(token, "")
    assert not minter.verify(token, "é" * 64)
    assert not minter.verify("\udcff", stored)  # a lone surrogate cannot be encoded


# -- JWTs --------------------------------------------------------------------------------

ACCESS = [{"type": "repository", "name": "acme/web", "actions": ["pull", "push"]}]


def make_signer(clock: FakeClock, key: ec.EllipticCurvePrivateKey | None = None) -> JWTSigner:
    return JWTSigner(key or ec.generate_private_key(ec.SECP256R1()), "cargohold", 30, clock)


def _segments(token: str) -> tuple[dict[str, object], dict[str, object]]:
    def part(s: str) -> dict[str, object]:
        result: dict[str, object] = json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        return result

    header, payload, _ = token.split(".")
    return part(header), part(payload)


def test_jwt_issue_and_verify() -> None:
    clock = FakeClock()
    signer = make_signer(clock)
    token = signer.issue("alice", ACCESS, "registry.example", 3600)
    claims = signer.verify(token, "registry.example")
    assert claims["sub"] == "alice"
    assert claims["iss"] == "cargohold"
    assert claims["aud"] == "registry.example"
    assert claims["access"] == ACCESS
    assert claims["iat"] == claims["nbf"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 3600
    header, _ = _segments(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == signer.key_id


def test_jwt_ids_are_unique() -> None:
    signer = make_signer(FakeClock())
    a = signer.verify(signer.issue("a", [], "aud", 60), "aud")
    b = signer.verify(signer.issue("a", [], "aud", 60), "aud")
    assert a["jti"] != b["jti"]


def test_jwt_wrong_audience() -> None:
    signer = make_signer(FakeClock())
    token = signer.issue("alice", ACCESS, "registry.example", 3600)
    with pytest.raises(TokenInvalid):
        signer.verify(token, "elsewhere.example")


def test_jwt_expiry_respects_leeway() -> None:
    clock = FakeClock()
    signer = make_signer(clock)
    token = signer.issue("alice", ACCESS, "aud", 60)
    clock.advance(60 + 29)
    signer.verify(token, "aud")  # within the 30 s leeway
    clock.advance(1)
    with pytest.raises(TokenInvalid, match="expired"):
        signer.verify(token, "aud")


def test_jwt_not_yet_valid() -> None:
    clock = FakeClock()
    signer = make_signer(clock)
    token = signer.issue("alice", ACCESS, "aud", 60)
    clock.advance(-31)
    with pytest.raises(TokenInvalid, match="not yet valid"):
        signer.verify(token, "aud")


def test_jwt_tampered_payload_and_signature() -> None:
    signer = make_signer(FakeClock())
    token = signer.issue("alice", ACCESS, "aud", 60)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["access"][0]["actions"].append("*")
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(TokenInvalid):
        signer.verify(f"{header}.{forged}.{signature}", "aud")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(TokenInvalid):
        signer.verify(f"{header}.{payload}.{flipped}", "aud")


def test_a_remembered_jwt_still_expires_and_binds_its_audience_and_bytes() -> None:
    """Verified tokens are remembered (PERF): that must never widen what is accepted."""
    clock = FakeClock()
    signer = make_signer(clock)
    token = signer.issue("alice", ACCESS, "aud", 60)
    assert signer.verify(token, "aud")["sub"] == "alice"
    with pytest.raises(TokenInvalid):
        signer.verify(token, "elsewhere")
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(TokenInvalid):
        signer.verify(f"{header}.{payload}.{flipped}", "aud")
    with pytest.raises(TokenInvalid):
        signer.verify(token + " ", "aud")
    clock.advance(60 + 29)
    assert signer.verify(token, "aud")["sub"] == "alice"  # within the leeway
    clock.advance(1)
    for _ in range(2):  # once dropped as expired, and again from scratch
        with pytest.raises(TokenInvalid, match="expired"):
            signer.verify(token, "aud")


def test_remembered_jwts_are_bounded() -> None:
    signer = make_signer(FakeClock())
    signer.VERIFIED_TOKENS = 3
    tokens = [signer.issue(f"u{i}", [], "aud", 60) for i in range(5)]
    for token in tokens:
        signer.verify(token, "aud")
    assert len(signer._verified) == 3
    assert [signer.verify(t, "aud")["sub"] for t in tokens] == [f"u{i}" for i in range(5)]


def test_jwt_from_another_key_is_refused() -> None:
    clock = FakeClock()
    ours, theirs = make_signer(clock), make_signer(clock)
    with pytest.raises(TokenInvalid):
        ours.verify(theirs.issue("alice", ACCESS, "aud", 60), "aud")


def test_jwt_garbage_and_alg_none_are_token_invalid() -> None:
    signer = make_signer(FakeClock())
    for junk in ("", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."):
        with pytest.raises(TokenInvalid) as info:
            signer.verify(junk, "aud")
        assert isinstance(info.value, DomainError)
        assert type(info.value) is TokenInvalid


def test_kid_is_stable_for_a_key_and_libtrust_shaped() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first, second = make_signer(FakeClock(), key), make_signer(FakeClock(), key)
    assert first.key_id == second.key_id == libtrust_key_id(key.public_key())
    groups = first.key_id.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    assert make_signer(FakeClock()).key_id != first.key_id


def test_jwt_signer_wants_p256() -> None:
    with pytest.raises(ValueError):
        JWTSigner(ec.generate_private_key(ec.SECP384R1()), "cargohold")


# -- the signing key file ----------------------------------------------------------------


def _same_key(a: ec.EllipticCurvePrivateKey, b: ec.EllipticCurvePrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


def test_key_file_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "registry.pem"
    key = load_or_create_signing_key(path, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert _same_key(key, load_or_create_signing_key(path, None))
    assert [p.name for p in path.parent.iterdir()] == ["registry.pem"]  # no temp left


def test_encrypted_key_file_is_never_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "registry.pem"
    cipher_key = os.urandom(32)
    key = load_or_create_signing_key(path, cipher_key)
    pem = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # NOTE: an encrypted PKCS#8 body also starts "MI" (a DER sequence), so look for the
    # plaintext headers rather than the bare marker.
    assert b"-----BEGIN PRIVATE KEY-----\nMI" not in pem
    assert b"BEGIN EC PRIVATE KEY" not in pem
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    assert _same_key(key, load_or_create_signing_key(path, cipher_key))


def test_wrong_or_missing_encryption_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.pem"
    load_or_create_signing_key(path, os.urandom(32))
    before = path.read_bytes()
    with pytest.raises(SigningKeyError, match="wrong encryption key"):
        load_or_create_signing_key(path, os.urandom(32))
    with pytest.raises(SigningKeyError, match="no key was given"):
        load_or_create_signing_key(path, None)
    assert path.read_bytes() == before  # never overwritten on failure


def test_plaintext_key_with_an_encryption_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.pem"
    load_or_create_signing_key(path, None)
    with pytest.raises(SigningKeyError, match="not encrypted"):
        load_or_create_signing_key(path, os.urandom(32))


def test_a_configured_non_ec_or_corrupt_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.pem"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningKeyError):
        load_or_create_signing_key(path, None)


def test_signer_on_a_reloaded_key_verifies_old_tokens(tmp_path: Path) -> None:
    path = tmp_path / "registry.pem"
    clock = FakeClock()
    token = make_signer(clock, load_or_create_signing_key(path, b"k" * 32)).issue(
        "alice", ACCESS, "aud", 60
    )
    restarted = make_signer(clock, load_or_create_signing_key(path, b"k" * 32))
    assert restarted.verify(token, "aud")["sub"] == "alice"


# -- login throttle ----------------------------------------------------------------------


def make_throttle(clock: FakeClock, max_entries: int = 1000) -> MemoryLoginThrottle:
    return MemoryLoginThrottle(
        clock, free_failures=5, base_delay=1.0, max_delay=300.0, max_entries=max_entries
    )


def test_five_free_failures_then_doubling_to_a_cap() -> None:
    clock = FakeClock(0.0)
    throttle = make_throttle(clock)
    for _ in range(5):
        assert throttle.check("alice", "10.0.0.1") == 0.0
        throttle.failed("alice", "10.0.0.1")
    assert throttle.check("alice", "10.0.0.1") == 0.0
    expected = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]
    for delay in expected:
        throttle.failed("alice", "10.0.0.1")
        assert throttle.check("alice", "10.0.0.1") == delay
        clock.advance(delay / 2)
        assert throttle.check("alice", "10.0.0.1") == delay / 2
        clock.advance(delay / 2)
        assert throttle.check("alice", "10.0.0.1") == 0.0


def test_huge_failure_counts_stay_at_the_cap() -> None:
    clock = FakeClock(0.0)
    throttle = make_throttle(clock)
    for _ in range(2000):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.check("alice", "10.0.0.1") == 300.0


def test_account_and_address_are_throttled_independently() -> None:
    clock = FakeClock(0.0)
    throttle = make_throttle(clock)
    for i in range(6):  # one address sprays six accounts
        throttle.failed(f"user{i}", "10.0.0.1")
    assert throttle.check("someone-else", "10.0.0.1") == 1.0
    assert throttle.check("user0", "10.0.0.2") == 0.0
    for i in range(6):  # six addresses hammer one account
        throttle.failed("bob", f"192.0.2.{i}")
    assert throttle.check("bob", "198.51.100.7") == 1.0
    assert throttle.check("carol", "192.0.2.0") == 0.0


def test_success_resets() -> None:
    clock = FakeClock(0.0)
    throttle = make_throttle(clock)
    for _ in range(8):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.check("alice", "10.0.0.1") == 4.0
    throttle.succeeded("alice", "10.0.0.1")
    assert throttle.check("alice", "10.0.0.1") == 0.0
    for _ in range(5):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.check("alice", "10.0.0.1") == 0.0  # the free failures are back


def test_memory_is_bounded() -> None:
    throttle = make_throttle(FakeClock(0.0), max_entries=50)
    for i in range(10_000):
        throttle.failed(f"user{i}", f"addr{i}")
    assert throttle.tracked() == (50, 50)
    assert throttle.check("user9999", "x") == 0.0  # one failure each: still free
    assert throttle.check("user0", "addr0") == 0.0  # evicted


def test_throttle_is_thread_safe() -> None:
    throttle = make_throttle(FakeClock(0.0))

    def hammer() -> None:
        for _ in range(500):
            throttle.failed("alice", "10.0.0.1")
            throttle.check("alice", "10.0.0.1")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert throttle.check("alice", "10.0.0.1") == 300.0
