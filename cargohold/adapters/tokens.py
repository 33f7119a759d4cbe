"""Tokens: the opaque API and robot tokens (hashed), the registry's ES256 JWTs, and the
key that signs them.

``load_or_create_signing_key`` makes a P-256 key on first start and keeps it as PEM
(mode 0600, encrypted when a key is given). Foreign errors (PyJWT, cryptography) are
translated here; only ``cargohold.domain.errors`` types and ``SigningKeyError`` (a
startup failure) leave this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cargohold.adapters.key_files import create_exclusive
from cargohold.domain.credentials import TokenMinter, TokenSigner
from cargohold.domain.errors import TokenInvalid

# -- opaque tokens -----------------------------------------------------------------------

TOKEN_PREFIX = "chk_"  # noqa: S105 - a public marker, not a secret


class HashedTokenMinter(TokenMinter):
    """``chk_`` + 32 random bytes (urlsafe base64); stored as the sha256 hex of the token.

    NOTE: a fast hash is right here, unlike for passwords. A token carries 256 bits from
    ``secrets``, so there is nothing to guess or brute-force from its hash; slow hashing
    only defends low-entropy secrets. It also keeps per-request token checks cheap.
    """

    def __init__(self, prefix: str = TOKEN_PREFIX, nbytes: int = 32) -> None:
        self._prefix = prefix
        self._nbytes = nbytes

    def mint(self) -> tuple[str, str]:
        token = self._prefix + secrets.token_urlsafe(self._nbytes)
        return token, _sha256_hex(token)

    def verify(self, token: str, stored_hash: str) -> bool:
        try:
            expected = stored_hash.encode("ascii")
            actual = _sha256_hex(token).encode("ascii")
        except (UnicodeEncodeError, AttributeError):
            return False
        return hmac.compare_digest(actual, expected)

    def lookup_hash(self, token: str) -> str | None:
        if not self.looks_like_token(token):
            return None
        try:
            return _sha256_hex(token)
        except UnicodeEncodeError:
            return None

    def looks_like_token(self, secret: str) -> bool:
        return isinstance(secret, str) and secret.startswith(self._prefix)


def _sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# -- registry JWTs -----------------------------------------------------------------------


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The Docker/libtrust key id: base32 of the first 240 bits of sha256(DER SPKI).

    48 base32 characters in 12 colon-separated groups of 4, e.g. ``ABCD:EFGH:...``; what
    docker/distribution's token verifier computes for a key, so it is stable per key.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"]


class JWTSigner(TokenSigner):
    """ES256 tokens in the Docker token-auth shape, signed with one P-256 key.

    ``now`` (seconds since the epoch) is injected; the time claims are checked against it
    here rather than by PyJWT (which would read the real clock). ``leeway_seconds`` absorbs
    clock skew between this server and whoever checks the token (Quay allows 30 s).
    """

    ALGORITHM = "ES256"
    #: Tokens whose verification is remembered (see ``verify``), least recently used out.
    VERIFIED_TOKENS = 4096

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        issuer: str,
        leeway_seconds: int = 30,
        now: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs a P-256 (secp256r1) key")
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._now = now
        self._new_id = new_id
        self.key_id = libtrust_key_id(self._public_key)
        # sha256 of (audience, token) -> (claims, exp): tokens this signer found genuine.
        self._verified: OrderedDict[bytes, tuple[dict[str, Any], float]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def issue(
        self,
        subject: str,
        access: list[dict[str, Any]],
        audience: str,
        ttl_seconds: int,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds}")
        clash = set(extra_claims or ()) & set(_REQUIRED_CLAIMS)
        if clash:
            raise ValueError(f"extra claims may not replace {sorted(clash)}")
        issued = int(self._now())
        claims = {
            **(extra_claims or {}),
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "exp": issued + ttl_seconds,
            "nbf": issued,
            "iat": issued,
            "jti": self._new_id(),
            "access": access,
        }
        return jwt.encode(
            claims, self._private_key, algorithm=self.ALGORITHM, headers={"kid": self.key_id}
        )

    def sign_detached(self, data: bytes) -> bytes:
        """An ECDSA P-256 / SHA-256 signature of ``data`` (DER), for statements that are
        not tokens: the audit chain's checkpoints."""
        return self._private_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def verify_detached(self, data: bytes, signature: bytes) -> bool:
        try:
            self._public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """See ``TokenSigner.verify``. The claims returned are shared between the
        requests that present the same token: read them, never change them.

        PERF: checking an ES256 signature costs ~200 us, more than the rest of a manifest
        GET, and a client sends the same token with every request for its lifetime
        (``token_ttl_seconds``). A token's signature, issuer, audience and claims never
        change, so a genuine one is remembered (by its sha256, not its text) until it
        expires; its time claims are checked again on every use, against ``now``.
        """
        key = hashlib.sha256(audience.encode() + b"\0" + token.encode()).digest()
        with self._verified_lock:
            known = self._verified.get(key)
            if known is not None:
                self._verified.move_to_end(key)
        if known is not None:
            if self._now() < known[1] + self._leeway:
                return known[0]
            with self._verified_lock:
                self._verified.pop(key, None)
            raise TokenInvalid("token has expired")
        claims = self._verify(token, audience)
        with self._verified_lock:
            self._verified[key] = (claims, claims["exp"])
            while len(self._verified) > self.VERIFIED_TOKENS:
                self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str, audience: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=[self.ALGORITHM],
                audience=audience,
                issuer=self._issuer,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise TokenInvalid(f"token rejected: {e}") from e
        if header.get("kid") != self.key_id:
            raise TokenInvalid("token signed under another key id")
        now = self._now()
        exp, nbf = claims["exp"], claims["nbf"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, nbf)):
            raise TokenInvalid("token time claims are not numbers")
        if now >= exp + self._leeway:
            raise TokenInvalid("token has expired")
        if now < nbf - self._leeway:
            raise TokenInvalid("token is not yet valid")
        if not isinstance(claims["access"], list):
            raise TokenInvalid("token access claim is not a list")
        return claims


# -- the signing key on disk -------------------------------------------------------------


class SigningKeyError(Exception):
    """The signing key file cannot be read, decrypted or written (a startup failure)."""


def load_signing_key(pem: bytes, password: bytes | None, source: str) -> ec.EllipticCurvePrivateKey:
    """Parse a PEM private key (P-256 only); ``password`` decrypts an encrypted PEM.

    For a PEM path given in the configuration as well as for the generated file.
    Raises ``SigningKeyError`` with a one-line message naming ``source``.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as e:
        # cryptography: a password for a plaintext PEM, or none for an encrypted one.
        if password is None:
            raise SigningKeyError(f"signing key {source} is encrypted and no key was given") from e
        raise SigningKeyError(
            f"signing key {source} is not encrypted but an encryption key was given"
        ) from e
    except ValueError as e:
        # Wrong password and malformed PEM both land here; say both possibilities.
        raise SigningKeyError(
            f"cannot load signing key {source}: wrong encryption key or not a PEM private key"
        ) from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"signing key {source} is not a P-256 EC key")
    return key


def load_or_create_signing_key(
    path: Path, encryption_key: bytes | None
) -> ec.EllipticCurvePrivateKey:
    """The P-256 key kept at ``path``, generated and written there on first start.

    The file is PKCS#8 PEM with mode 0600, encrypted under ``encryption_key`` (the
    settings' cipher key) when one is given, so the key is never plaintext on disk.
    Creation is atomic and exclusive: two processes starting together end up with the same
    key. Raises ``SigningKeyError`` for an unreadable or undecryptable file.
    """
    source = str(path)
    encryption_key = encryption_key or None  # an empty cipher key means "none"
    try:
        return load_signing_key(path.read_bytes(), encryption_key, source)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SigningKeyError(f"cannot read signing key {source}: {e.strerror or e}") from e

    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(encryption_key)
        if encryption_key
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    try:
        theirs = create_exclusive(path, pem)
    except OSError as e:
        raise SigningKeyError(f"cannot write signing key {source}: {e.strerror or e}") from e
    if theirs is not None:  # another process made the key first: use theirs
        return load_signing_key(theirs, encryption_key, source)
    return key
