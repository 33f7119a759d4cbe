"""Ports for secrets: password hashes, API/robot tokens, registry JWTs, login throttling.

Written as contracts; the adapters are ``adapters/passwords.py``, ``adapters/tokens.py``
and ``adapters/login_throttle.py``. No port ever returns or logs a secret except where its
docstring says so (``TokenMinter.mint`` hands the fresh token to the caller exactly
once). Stored values (hashes) are safe to persist in events and views; secrets are not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class PasswordHasher(ABC):
    """Slow, salted, one-way hashing of human-chosen passwords.

    A stored hash is a self-describing string (algorithm, parameters, salt and digest), so
    hashes made under older parameters keep verifying after the parameters change.
    """

    @abstractmethod
    def hash(self, password: str) -> str:
        """A fresh hash of ``password``, with a new random salt on every call.

        The result never contains ``password``. Raises ``CredentialInvalid`` for an empty
        password.
        """

    @abstractmethod
    def verify(self, password: str, stored_hash: str) -> bool:
        """Whether ``password`` matches ``stored_hash``.

        False for a wrong password *and* for a malformed or foreign ``stored_hash``: it
        never raises on bad input, so a corrupt row reads as "no", never as a 500.
        """

    @abstractmethod
    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made under parameters other than the current ones.

        Callers re-hash the password they just verified and record the new hash. True for
        a malformed hash.
        """


class TokenMinter(ABC):
    """High-entropy bearer tokens (robot tokens, API tokens) stored only as hashes."""

    @abstractmethod
    def mint(self) -> tuple[str, str]:
        """A new ``(token, stored_hash)`` pair.

        ``token`` is the secret: shown to its owner once and never stored. Tokens carry a
        recognisable prefix so that secret scanners and log scrubbers can spot them; two
        calls never return the same token. ``stored_hash`` is what events and views keep.
        """

    @abstractmethod
    def verify(self, token: str, stored_hash: str) -> bool:
        """Whether ``token`` is the one ``stored_hash`` was minted for.

        Compares in constant time. False (never an exception) for any malformed input.
        """

    @abstractmethod
    def lookup_hash(self, token: str) -> str | None:
        """The ``stored_hash`` that ``token`` was minted with, to find a token by its hash.

        Deterministic (the same token always gives the same hash). ``None`` for anything
        that cannot be one of this minter's tokens (wrong prefix, not text), so callers
        never query a store with garbage.
        """

    @abstractmethod
    def looks_like_token(self, secret: str) -> bool:
        """Whether ``secret`` has this minter's token prefix (a token, not a password)."""


class TokenSigner(ABC):
    """Signed, short-lived registry bearer tokens (Docker token-auth JWTs).

    ``access`` entries follow the Docker token spec:
    ``{"type": "repository", "name": "ns/repo", "actions": ["pull", "push"]}``.
    """

    @abstractmethod
    def issue(
        self,
        subject: str,
        access: list[dict[str, Any]],
        audience: str,
        ttl_seconds: int,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A compact signed token for ``subject`` granting ``access`` to ``audience``.

        Valid from now (per the signer's clock) for ``ttl_seconds`` (> 0, else
        ``ValueError``). Each token carries a unique id. ``extra_claims`` are added
        (private claims); they never replace a registered one (``ValueError``).
        """

    @abstractmethod
    def sign_detached(self, data: bytes) -> bytes:
        """A signature over ``data`` with the same key, for statements that are not tokens
        (the audit chain's checkpoints). Callers prefix ``data`` with their own domain
        string, so a statement can never be mistaken for a token or the reverse."""

    @abstractmethod
    def verify_detached(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature over ``data``; never raises."""

    @abstractmethod
    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of ``token`` if it is genuine and current for ``audience``.

        Checks the signature (against this signer's key only), the issuer, the audience,
        and ``nbf``/``exp`` with the signer's leeway for clock skew. Every failure, whatever
        its cause, raises ``TokenInvalid``; no library exception escapes.
        """


class LoginThrottle(ABC):
    """Slows repeated failed logins, per account and per source address independently.

    Implementations receive a clock (seconds) in their constructor: monotonic for one
    process, wall time for a throttle shared by processes or hosts. The
    intended call sequence for one attempt is ``check`` -> (refuse if > 0) -> verify the
    credentials -> ``failed`` or ``succeeded``.
    """

    @abstractmethod
    def check(self, account: str, address: str) -> float:
        """Seconds the caller must still wait before trying ``account`` from ``address``.

        ``0.0`` when free. The larger of the account's and the address's delays. Does not
        itself count as an attempt.
        """

    @abstractmethod
    def failed(self, account: str, address: str) -> None:
        """Record a failed attempt against both the account and the address."""

    @abstractmethod
    def succeeded(self, account: str, address: str) -> None:
        """Record a success: forget the failures of both the account and the address."""


class SecretBox(ABC):
    """Authenticated encryption of secrets that must be recovered (a mirror's upstream
    password), under a key of the installation's own, so that events and views only ever
    hold ciphertext, whether or not the log itself is encrypted.

    ``context`` (for example the repository's name) is bound to the ciphertext: a value
    sealed for one context does not open for another, so ciphertext copied from one
    mirror's events into another's is refused.
    """

    @abstractmethod
    def seal(self, plaintext: bytes, context: str) -> bytes:
        """Fresh ciphertext of ``plaintext`` (a new nonce on every call)."""

    @abstractmethod
    def open(self, ciphertext: bytes, context: str) -> bytes:
        """The plaintext. Raises ``SecretUnreadable`` for a wrong key, a wrong context or
        tampered bytes; the message never holds any part of the secret."""


class SecretUnreadable(Exception):
    """Sealed bytes that this key cannot open (see ``SecretBox.open``)."""
