"""First start: the superuser ``admin``, and the registry-token signing key kept on disk."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cargohold.adapters.passwords import Argon2PasswordHasher
from cargohold.bootstrap import Container, StartupError, bootstrap, ensure_admin
from cargohold.config import load_settings
from cargohold.domain.errors import CredentialsInvalid

CIPHER_KEY = base64.b64encode(b"c" * 32).decode()


def _bootstrap(data: Path, **overrides: object) -> Container:
    settings = load_settings(environ={}, overrides={"data_dir": data, **overrides})
    return bootstrap(settings, hasher=Argon2PasswordHasher.cheap())


def test_first_start_creates_admin_with_a_generated_password_once(tmp_path: Path) -> None:
    c = _bootstrap(tmp_path / "d")
    try:
        password = ensure_admin(c)
        assert password is not None and len(password) >= 20
        identity = c.authenticator.basic("admin", password, "127.0.0.1")
        assert identity.name == "admin" and identity.superuser
        assert ensure_admin(c) is None  # the second start creates nothing
        with pytest.raises(CredentialsInvalid):
            c.authenticator.basic("admin", password + "x", "127.0.0.1")
    finally:
        c.close()


def test_a_configured_admin_password_is_used_and_not_returned(tmp_path: Path) -> None:
    c = _bootstrap(tmp_path / "d", admin_password="chosen-by-the-operator")
    try:
        assert ensure_admin(c) is None
        assert c.authenticator.basic("admin", "chosen-by-the-operator", "::1").superuser
    finally:
        c.close()


def test_the_signing_key_is_kept_encrypted_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    c = _bootstrap(data, cipher_key=CIPHER_KEY)
    try:
        token = c.signer.issue("alice", [], "cargohold", 60)
    finally:
        c.close()
    pem = (data / "signing-key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert (data / "signing-key.pem").stat().st_mode & 0o077 == 0
    again = _bootstrap(data, cipher_key=CIPHER_KEY)
    try:
        assert again.signer.verify(token, "cargohold")["sub"] == "alice"
    finally:
        again.close()
    with pytest.raises(StartupError, match="signing key"):
        _bootstrap(data, cipher_key=base64.b64encode(b"d" * 32).decode())


def test_a_configured_signing_key_file_is_used(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    one = _bootstrap(tmp_path / "a", signing_key_file=str(path))
    two = _bootstrap(tmp_path / "b", signing_key_file=str(path))
    try:
        # Two nodes with separate data dirs accept each other's tokens.
        assert two.signer.verify(one.signer.issue("bob", [], "cargohold", 60), "cargohold")
    finally:
        one.close()
        two.close()
    assert not (tmp_path / "a" / "signing-key.pem").exists()
    with pytest.raises(StartupError, match="signing key"):
        _bootstrap(tmp_path / "c", signing_key_file=str(tmp_path / "missing.pem"))
