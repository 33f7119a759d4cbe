"""``SecretBox`` with AES-256-GCM (``cryptography``), and the key file it keeps.

The key is 32 random bytes at ``<data_dir>/mirror-key`` (or ``mirror_key_file``), made on
first start like the signing key: mode 0600, created with an exclusive link so that two
processes starting together share one key, and itself sealed under the settings'
``cipher_key`` when there is one (so the key is never plaintext on disk then). Every node
of an installation must use the same key (set ``mirror_key_file`` to a shared file), as
with ``signing_key_file``.

Ciphertext layout: ``b"\\x01" + nonce (12 bytes) + AES-GCM(ciphertext || tag)``, with the
context as the associated data.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cargohold.adapters.key_files import create_exclusive
from cargohold.domain.credentials import SecretBox, SecretUnreadable

_VERSION = b"\x01"
_NONCE = 12
# The associated data that binds a wrapped key file to its purpose.
_KEY_FILE_AAD = b"cargohold mirror key"


class SecretKeyError(Exception):
    """The key file cannot be read, written or unwrapped (a one-line message)."""


class AesGcmSecretBox(SecretBox):
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("an AES-256-GCM key is 32 bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "AesGcmSecretBox(<key>)"

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, ciphertext: bytes, context: str) -> bytes:
        if len(ciphertext) < 1 + _NONCE + 16 or ciphertext[:1] != _VERSION:
            raise SecretUnreadable("not a sealed secret of this version")
        nonce, body = ciphertext[1 : 1 + _NONCE], ciphertext[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, context.encode())
        except InvalidTag:
            raise SecretUnreadable(
                "the secret does not open with this key (another installation's key, or "
                "sealed for another repository)"
            ) from None


def load_or_create_secret_key(path: Path, wrapping_key: bytes | None) -> bytes:
    """The 32-byte key kept at ``path``, generated and written there on first start.

    The file is JSON: ``{"key": <base64>}``, or ``{"sealed": <base64>}`` wrapped under
    ``wrapping_key`` (16, 24 or 32 bytes: the decoded ``cipher_key``). Raises
    ``SecretKeyError``."""
    source = str(path)
    try:
        return _read_key(path.read_bytes(), wrapping_key, source)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SecretKeyError(f"cannot read mirror key {source}: {e.strerror or e}") from e
    key = secrets.token_bytes(32)
    if wrapping_key:
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + AESGCM(wrapping_key).encrypt(nonce, key, _KEY_FILE_AAD)
        doc = {"sealed": base64.b64encode(sealed).decode()}
    else:
        doc = {"key": base64.b64encode(key).decode()}
    try:
        theirs = create_exclusive(path, json.dumps(doc).encode() + b"\n")
    except OSError as e:
        raise SecretKeyError(f"cannot write mirror key {source}: {e.strerror or e}") from e
    if theirs is not None:  # another process made the key first: use theirs
        return _read_key(theirs, wrapping_key, source)
    return key


def read_secret_key(path: Path, wrapping_key: bytes | None) -> bytes:
    """The key of an existing file (``mirror_key_file``); ``SecretKeyError`` otherwise."""
    try:
        return _read_key(path.read_bytes(), wrapping_key, str(path))
    except OSError as e:
        raise SecretKeyError(f"cannot read mirror key {path}: {e.strerror or e}") from e


def _read_key(raw: bytes, wrapping_key: bytes | None, source: str) -> bytes:
    try:
        doc = json.loads(raw)
        if "key" in doc:
            key = base64.b64decode(doc["key"], validate=True)
        elif "sealed" in doc:
            if not wrapping_key:
                raise SecretKeyError(f"mirror key {source} is sealed and no cipher_key is set")
            sealed = base64.b64decode(doc["sealed"], validate=True)
            key = AESGCM(wrapping_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], _KEY_FILE_AAD)
        else:
            raise ValueError("no key")
    except InvalidTag:
        raise SecretKeyError(f"mirror key {source} does not open with this cipher_key") from None
    except (ValueError, TypeError, AttributeError):
        raise SecretKeyError(f"mirror key {source} is malformed") from None
    if len(key) != 32:
        raise SecretKeyError(f"mirror key {source} is not 32 bytes")
    return key
