"""The first start of a registry: the superuser ``admin``.

A registry without accounts would be one nobody can log in to, so its first start
creates ``admin`` as a superuser, with the configured password or a generated one that
the operator sees once (the CLI prints it; it is never stored or logged).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Protocol

from cargohold.commands.identity import IdentityService
from cargohold.commands.unit_of_work import Caller
from cargohold.domain.errors import NameTaken
from cargohold.domain.identity import AccountName
from cargohold.domain.values import Actor

ADMIN = "admin"


class Accounts(Protocol):
    def has_accounts(self) -> bool:
        """Whether any user exists."""


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def ensure_admin(
    identity: IdentityService,
    accounts: Accounts,
    configured_password: str = "",
    generate: Callable[[], str] | None = None,
) -> str | None:
    """On a registry without accounts, create the superuser ``admin``.

    Its password is ``configured_password``, or generated; the generated one is returned
    (for the operator to see once). ``None`` when there was nothing to do or the
    password was configured. Another worker or node creating it first is fine.
    """
    if accounts.has_accounts():
        return None
    password = configured_password or (generate or generate_password)()
    try:
        identity.create_user(
            AccountName(ADMIN), "", password, Caller(Actor.system(), "first-start"), superuser=True
        )
    except NameTaken:
        return None  # another node or worker got there first
    return None if configured_password else password
