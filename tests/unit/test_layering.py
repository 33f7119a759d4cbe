"""The tree is the architecture: which cargohold package may import which.

``ARROWS`` is the table of ``docs/architecture.md`` ("The layers and their arrows"), and
a test below checks that the two agree. Every import inside the package (at module level
or inside a function) must follow an arrow of the table or stay within its own layer.
Third-party drivers and frameworks are kept out of the inner layers transitively, so a
forbidden library cannot sneak in through a helper module either.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cargohold"
FORBIDDEN = {"falcon", "waitress", "psycopg", "psycopg_pool", "minio", "msgpack", "urllib3"}

#: layer -> the layers it may import besides itself (mirrors docs/architecture.md).
ARROWS: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "commands": frozenset({"domain"}),
    "projections": frozenset({"domain"}),
    "adapters": frozenset({"domain"}),
    "config": frozenset({"domain"}),
    "progress": frozenset(),
    "replay": frozenset({"domain", "projections", "adapters", "progress"}),
    "chores": frozenset({"domain", "commands", "projections"}),
    "http": frozenset({"domain", "commands", "projections", "config"}),
    "root": frozenset(
        {
            "domain",
            "commands",
            "projections",
            "adapters",
            "config",
            "progress",
            "replay",
            "chores",
            "http",
        }
    ),
}

#: The composition root: the only modules that know the container.
ROOT_MODULES = ("cargohold.bootstrap", "cargohold.cli", "cargohold.http.app")


def layer_of(module: str) -> str | None:
    """The layer of a ``cargohold`` module (``None`` for the package itself)."""
    if any(module == m or module.startswith(m + ".") for m in ROOT_MODULES):
        return "root"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cargohold" else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_path(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "cargohold":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(source: str, module: str = "") -> set[str]:
    """Every module ``source`` imports (``from a import b`` counts ``a`` and ``a.b``)."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def arrows_outside(modules: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import (of module name to its imports) that
    follows no arrow of ``ARROWS``."""
    bad: list[str] = []
    for importer, imported in sorted(modules.items()):
        source = layer_of(importer)
        if source is None:
            continue
        for target_module in sorted(imported):
            if not target_module.startswith("cargohold."):
                continue
            target = layer_of(target_module)
            if target is None or target == source or target in ARROWS[source]:
                continue
            bad.append(f"{importer} -> {target_module} ({source} -> {target})")
    return bad


def package_imports() -> dict[str, set[str]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        modules[name] = _imports(path.read_text(), name)
    return modules


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
        name = _module_name(path) if path.is_relative_to(ROOT) else ""
        for module in _imports(path.read_text(), name):
            top = module.split(".")[0]
            if top in FORBIDDEN:
                bad.setdefault(top, str(path))
            target = _module_path(module)
            if target is not None:
                todo.append(target)
    return bad


def test_every_import_follows_an_arrow() -> None:
    assert arrows_outside(package_imports()) == []


def test_every_module_is_in_a_layer_of_the_table() -> None:
    layers = {layer_of(name) for name in package_imports()} - {None}
    assert layers <= set(ARROWS)


def test_the_check_catches_an_arrow_outside_the_table() -> None:
    modules = {
        "cargohold.domain.sample": {"cargohold.domain.values", "cargohold.http.app"},
        "cargohold.adapters.sample": {"cargohold.projections.audit.kinds", "json"},
        "cargohold.http.registry_v2.sample": {"cargohold.bootstrap.container"},
        "cargohold.http.app": {"cargohold.bootstrap.container"},
        "cargohold.replay.sample": {"cargohold.projections.runner", "cargohold.adapters.sqlite"},
    }
    assert arrows_outside(modules) == [
        "cargohold.adapters.sample -> cargohold.projections.audit.kinds (adapters -> projections)",
        "cargohold.domain.sample -> cargohold.http.app (domain -> root)",
        "cargohold.http.registry_v2.sample -> cargohold.bootstrap.container (http -> root)",
    ]


def test_relative_imports_are_resolved() -> None:
    found = _imports("from ..projections import audit\n", "cargohold.adapters.sample")
    assert "cargohold.projections.audit" in found


def test_the_table_is_the_one_in_docs_architecture() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("<!-- arrows -->")[1]
    documented: dict[str, frozenset[str]] = {}
    for row in re.findall(r"^\| `(\w+)` \| (.*?) \|", section, re.M):
        layer, targets = row
        documented[layer] = frozenset(re.findall(r"`(\w+)`", targets))
    assert documented == ARROWS


@pytest.mark.parametrize("layer", ["domain", "commands", "projections"])
def test_inner_layers_import_no_framework_or_driver(layer: str) -> None:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        assert forbidden_imports(path) == {}, f"{path} reaches a forbidden import"


def test_only_the_postgres_adapter_imports_psycopg() -> None:
    importers = {
        name
        for name, imported in package_imports().items()
        if any(m.split(".")[0] in {"psycopg", "psycopg_pool"} for m in imported)
    }
    assert importers == {"cargohold.adapters.postgres"}


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
