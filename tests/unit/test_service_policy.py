"""With CI=true a missing external service fails the test; locally it skips it."""

from __future__ import annotations

import pytest

from tests.fixtures.services import find_binary


def test_missing_binary_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="required when CI=true"):
        find_binary("no-such-server-binary")


def test_missing_binary_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception):
        find_binary("no-such-server-binary")
