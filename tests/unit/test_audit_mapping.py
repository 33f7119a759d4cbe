"""Every event class of every aggregate maps to an audit entry (or, decided and
documented, to none), with a declared kind, JSON metadata and no secret in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cargohold.adapters.sqlite import SQLiteDatabase
from cargohold.domain.accounts import NamespaceClaim
from cargohold.domain.mirror import Mirror
from cargohold.domain.proxy_cache import ProxyCache
from cargohold.domain.repository import Repository
from cargohold.projections.audit.kinds import AUDIT_KINDS, AuditMapper
from cargohold.projections.schema import create_tables
from tests.strategies import all_event_classes, events_of

MAPPER = AuditMapper()
#: Fields that hold secrets (hashes of passwords and tokens): never in an entry.
SECRET_FIELDS = ("password_hash", "token_hash")


def test_every_event_class_has_a_decided_mapping() -> None:
    missing = [c.__qualname__ for c in all_event_classes() if not MAPPER.maps(c)]
    assert missing == []


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> SQLiteDatabase:
    database = SQLiteDatabase(Path(tmp_path_factory.mktemp("audit")) / "views.sqlite")
    with database.transaction() as c:
        create_tables(c, "sqlite")
    return database


def _seed(c: Any, event: Any) -> None:
    """The rows the lookups of ``event`` need: its stream is a live repository, an
    organisation and an account at once."""
    stream = str(event.originator_id)
    c.execute("DELETE FROM repositories WHERE id = ?", (stream,))
    c.execute("DELETE FROM organizations WHERE id = ?", (stream,))
    c.execute("DELETE FROM accounts WHERE id = ?", (stream,))
    c.execute("DELETE FROM mirrors WHERE id = ?", (stream,))
    c.execute(
        "INSERT INTO repositories (id, name, visibility, created_at, position) "
        "VALUES (?, 'acme/web', 'private', '', 1)",
        (stream,),
    )
    c.execute(
        "INSERT INTO organizations (name, id, created_at, position) VALUES (?, ?, '', 1)",
        (f"org-{stream}", stream),
    )
    c.execute(
        "INSERT INTO accounts (name, id, email, superuser, created_at, position) "
        "VALUES (?, ?, '', 0, '', 1)",
        (f"user-{stream}", stream),
    )
    c.execute("INSERT INTO mirrors (id, repository, position) VALUES (?, 'acme/web', 1)", (stream,))
    c.execute("DELETE FROM proxy_caches WHERE id = ?", (stream,))
    c.execute(
        "INSERT INTO proxy_caches (org, id, position) VALUES (?, ?, 1)", (f"org-{stream}", stream)
    )


@pytest.mark.parametrize("event_class", all_event_classes(), ids=lambda c: c.__qualname__)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_event_becomes_a_declared_entry_without_secrets(
    db: SQLiteDatabase, event_class: type, data: st.DataObject
) -> None:
    event = data.draw(events_of(event_class))
    with db.transaction() as c:
        _seed(c, event)
        entry = MAPPER.entry(c, "", event)
    if event_class in (NamespaceClaim.Created, ProxyCache.Created):
        assert entry is None
        return
    assert entry is not None
    assert entry.kind in AUDIT_KINDS
    text = json.dumps(entry.metadata)  # JSON-able
    for name in SECRET_FIELDS:
        secret = getattr(event, name, None)
        # NOTE: a short generated "secret" ("0") may occur in any text; real hashes are
        # 64 hex digits.
        if secret and len(secret) >= 8:
            assert secret not in text, f"{name} leaked into {entry.kind}"
    if issubclass(event_class, Repository.Event | Mirror.Event):
        assert entry.repository is not None and entry.namespace == entry.repository.split("/")[0]
    else:
        assert entry.repository is None and entry.namespace
