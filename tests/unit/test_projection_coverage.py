"""The projection has a handler for every event class of every aggregate in the log.

An event class without one stops the projection (``UnknownEvent``) the first time it is
saved; this catches the omission when the class is added, not in production.
"""

from __future__ import annotations

from typing import Any

import pytest

from cargohold.projections.projector import RegistryProjector, UnknownEvent
from tests.strategies import all_event_classes


def test_every_event_class_of_every_aggregate_has_a_handler() -> None:
    handled = RegistryProjector().event_classes
    missing = [c.__qualname__ for c in all_event_classes() if c not in handled]
    assert missing == []


def test_an_unknown_event_stops_the_projection() -> None:
    class Stranger:
        pass

    cursor: Any = object()
    with pytest.raises(UnknownEvent, match="Stranger at position 7"):
        RegistryProjector().apply(cursor, "", Stranger(), 7)
