"""Durations of the tag time machine, in Quay's notation, and the ``quay.expires-after``
image label.

A duration is ``<number><unit>`` with unit ``s``, ``m``, ``h``, ``d`` or ``w`` ("2w",
"24h", "0s"): the form of Quay's ``TAG_EXPIRATION_OPTIONS`` and of the label. An image
whose config carries the label ``quay.expires-after`` gets, when pushed by tag, an
expiration that long after the push. A value that is not a duration is ignored, as Quay
ignores it: the push succeeds and the tag does not expire.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

from cargohold.domain.errors import InvalidInput

EXPIRES_AFTER_LABEL = "quay.expires-after"

#: The largest config blob read for the label; a bigger one is not looked into.
MAX_CONFIG_BYTES = 1024 * 1024

_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``"2w"`` -> 14 days. Raises ``InvalidInput`` for anything else."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(f"not a duration like 2w, 24h or 30m: {str(text)[:40]!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def label_expiration(config: bytes) -> timedelta | None:
    """The ``quay.expires-after`` label of an image config (JSON, ``config.Labels``), if
    present and a positive duration; ``None`` for anything else, never an error."""
    try:
        doc = json.loads(config)
    except (ValueError, RecursionError):
        return None
    section = doc.get("config") if isinstance(doc, dict) else None
    labels = section.get("Labels") if isinstance(section, dict) else None
    if not isinstance(labels, dict):
        return None
    value = labels.get(EXPIRES_AFTER_LABEL)
    if not isinstance(value, str):
        return None
    try:
        duration = parse_duration(value)
    except InvalidInput:
        return None
    return duration if duration > timedelta(0) else None
