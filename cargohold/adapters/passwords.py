"""The password port (``PasswordHasher``) on argon2id.

argon2's errors are translated here; a wrong or malformed hash is a failed ``verify``,
never an exception.
"""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from cargohold.domain.credentials import PasswordHasher
from cargohold.domain.errors import CredentialInvalid


class Argon2PasswordHasher(PasswordHasher):
    """argon2id via argon2-cffi. Defaults are RFC 9106's second recommendation (64 MiB)."""

    def __init__(
        self,
        time_cost: int = 3,
        memory_cost_kib: int = 65536,
        parallelism: int = 4,
        hash_len: int = 32,
        salt_len: int = 16,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=argon2.Type.ID,
        )

    @classmethod
    def cheap(cls) -> Argon2PasswordHasher:
        """The cheapest legal parameters: for tests only, never for real passwords."""
        return cls(time_cost=1, memory_cost_kib=8, parallelism=1)

    def hash(self, password: str) -> str:
        if not password:
            raise CredentialInvalid("the password must not be empty")
        return self._hasher.hash(password)

    def verify(self, password: str, stored_hash: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError, ValueError, TypeError):
            # VerifyMismatchError is a VerificationError; a corrupt stored hash is a "no".
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError, TypeError):
            return True
