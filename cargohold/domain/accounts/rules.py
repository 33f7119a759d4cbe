"""Checks shared by the identity aggregates (their guards call them before an event)."""

from __future__ import annotations

import re

from cargohold.domain.errors import CredentialInvalid, EmailInvalid, InvalidInput

# Deliberately loose: one "@", no spaces; deliverability is not the domain's business.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
EMAIL_MAX_LENGTH = 254


def check_hash(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise CredentialInvalid(f"{what} must be a non-empty hash string")


def check_email(email: str) -> None:
    """``""`` means "no address" (the first-start ``admin`` has none)."""
    if not isinstance(email, str):
        raise EmailInvalid("e-mail address must be a string")
    if email and (len(email) > EMAIL_MAX_LENGTH or _EMAIL_RE.fullmatch(email) is None):
        raise EmailInvalid(f"invalid e-mail address: {email[:200]!r}")


def window_change(current: int | None, seconds: int) -> dict[str, int | None] | None:
    """The fields of the ``TagExpirationWindowSet`` that moves a namespace's time-machine
    window from ``current`` to ``seconds``, or ``None`` when it is that already.
    Raises ``InvalidInput`` unless ``seconds`` is whole and at least zero."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise InvalidInput("the tag expiration window must be a whole number of seconds >= 0")
    if seconds == current:
        return None
    return {"seconds": seconds, "from_seconds": current}
