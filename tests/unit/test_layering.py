"""The tree is the architecture: domain/ and commands/ never reach the outside world.

Follows imports inside the package transitively, so a forbidden library cannot sneak in
through a helper module either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cargohold"
FORBIDDEN = {"falcon", "waitress", "psycopg", "psycopg_pool", "minio", "msgpack", "urllib3"}


def _module_path(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "cargohold":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def forbidden_imports(start: Path) -> dict[str, str]:
    """Map each forbidden top-level module reachable from ``start`` to the file importing it."""
    seen: set[Path] = set()
    todo = [start]
    bad: dict[str, str] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            top = module.split(".")[0]
            if top in FORBIDDEN:
                bad.setdefault(top, str(path))
            target = _module_path(module)
            if target is not None:
                todo.append(target)
    return bad


@pytest.mark.parametrize("layer", ["domain", "commands"])
def test_inner_layers_import_no_framework_or_driver(layer: str) -> None:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        assert forbidden_imports(path) == {}, f"{path} reaches a forbidden import"


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import msgpack\nfrom falcon import App\n")
    assert set(forbidden_imports(sample)) == {"msgpack", "falcon"}


def test_the_check_follows_package_imports(tmp_path: Path) -> None:
    # cargohold.adapters.transcoder imports msgpack: reaching it through an import
    # inside the package must count.
    sample = tmp_path / "sample.py"
    sample.write_text("from cargohold.adapters.transcoder import MsgpackTranscoder\n")
    assert "msgpack" in forbidden_imports(sample)
