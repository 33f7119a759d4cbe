"""Stored topics that outlive a module move.

The log stores, with every event, the *topic* of its class (``module:QualName``), and
with every aggregate's ``Created`` event the topic of the aggregate class. Topics are a
persisted schema (``domain/repository.py``): a class that moves to another module keeps
the topic it was stored under, so that the log written before and after the move is the
same, and a reader of either (``replay``, a bundle import, an auditor's script) meets one
name for one kind of event.

``stored_as(module)`` pins the topic of an aggregate class and of every class nested in
it (its events) to ``module``. The topic resolves by import as well, because ``module``
re-exports the aggregate (``domain/accounts/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from eventsourcing.utils import register_topic

A = TypeVar("A", bound=type)


def stored_as(module: str) -> Callable[[A], A]:
    """Class decorator: store ``cls`` and its nested classes as ``module:QualName``."""

    def pin(cls: A) -> A:
        for owned in _nested(cls):
            topic = f"{module}:{owned.__qualname__}"
            # NOTE: eventsourcing's ``construct_topic`` prefers a class's own ``TOPIC``;
            # each class gets its own, so none inherits a base event's topic.
            owned.TOPIC = topic  # type: ignore[attr-defined]
            register_topic(topic, owned)
        return cls

    return pin


def _nested(cls: type) -> list[type]:
    found = [cls]
    for value in vars(cls).values():
        if isinstance(value, type) and value.__qualname__.startswith(f"{cls.__qualname__}."):
            found.extend(_nested(value))
    return found
