"""The time-machine window of each namespace: how long a moved, deleted or expired tag
stays restorable (Quay's ``tag_expiration_s``).

A namespace has its own window once an admin sets one (``TagExpirationWindowSet`` on its
``Account`` or ``Organization``); until then the installation's default applies
(``default_tag_expiration``, two weeks unless configured). An admin may choose only one of
the configured options (``tag_expiration_options``, by default 0s, 1d, 1w, 2w, 4w), as
Quay validates against ``TAG_EXPIRATION_OPTIONS``. A window of 0 makes nothing
restorable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from cargohold.domain.errors import InvalidInput


class TagWindows:
    """``lookup(namespace)`` is the namespace's own window in seconds, if it set one."""

    def __init__(
        self,
        lookup: Callable[[str], int | None],
        default: timedelta = timedelta(weeks=2),
        options: Sequence[timedelta] = (
            timedelta(0),
            timedelta(days=1),
            timedelta(weeks=1),
            timedelta(weeks=2),
            timedelta(weeks=4),
        ),
    ) -> None:
        self._lookup = lookup
        self.default = default
        self.options = tuple(sorted(set(options)))

    def seconds(self, namespace: str) -> int:
        """The namespace's window in whole seconds (what the API shows)."""
        own = self._lookup(namespace)
        return int(self.default.total_seconds()) if own is None else own

    def window(self, namespace: str) -> timedelta:
        return timedelta(seconds=self.seconds(namespace))

    def check(self, seconds: object) -> int:
        """``seconds`` if it is one of the options; ``InvalidInput`` otherwise."""
        allowed = [int(o.total_seconds()) for o in self.options]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds not in allowed:
            raise InvalidInput(
                "tag_expiration_s must be one of " + ", ".join(str(a) for a in allowed)
            )
        return seconds
