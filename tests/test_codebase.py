"""The codebase as a new maintainer meets it: every module says what it holds, and
docs/architecture.md's module map names every module (no processes, well under a second)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "actors", "web")


def modules() -> list[Path]:
    """Every Python module of the product's packages, as a path from the repository's root."""
    return sorted(
        path.relative_to(ROOT)
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "static" not in path.parts
    )


def test_every_module_says_what_it_holds() -> None:
    undocumented = [str(p) for p in modules() if not ast.get_docstring(ast.parse((ROOT / p).read_text()))]
    assert undocumented == [], f"modules without a docstring: {undocumented}"


def test_the_architecture_module_map_names_every_module_and_no_other() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    module_map = text.split("\n## Module map", 1)[1]
    mapped = {line.split("`")[1] for line in module_map.splitlines() if line.startswith("- `")}
    present = {str(p) for p in modules() if p.name != "__init__.py"}
    assert sorted(present - mapped) == [], "modules missing from docs/architecture.md's module map"
    assert sorted(mapped - present) == [], "docs/architecture.md's module map names modules that are gone"
