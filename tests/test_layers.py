"""Every import in the package points down the layers, so each layer can be read (and tested) without those above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "archon_search"

#: Layer of each top-level part of the package, lowest first. A module may import its own part and any part with
#: a lower number; parts that share a number (datasets and ops) are peers and may not import each other.
LAYERS: dict[str, int] = {
    "core": 0,
    "lang": 1,
    "backends": 2,
    "scoring": 3,
    "datasets": 4,
    "ops": 4,
    "runtime": 5,
    "eval": 6,
    "search": 7,
    "serve": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 10,
}


def _part(module: str) -> str:
    """The top-level part of a dotted module name inside the package ('archon_search.lang.spec' -> 'lang')."""
    rest = module.split(".")[1:]
    return rest[0] if rest else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of the package in a file, lazy ones inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(node.lineno, name) for name in names if name.startswith("archon_search.")][:1]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("archon_search.")]
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_layer():
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in _modules()}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in LAYERS"


def test_imports_point_down():
    upward = []
    for path in _modules():
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        upward += [
            f"{path.relative_to(PACKAGE)}:{line} ({own}) imports {module} ({_part(module)})"
            for line, module in _imports(path)
            if _part(module) != own and LAYERS[_part(module)] >= LAYERS[own]
        ]
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_the_walker_sees_lazy_imports(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from archon_search.runtime.api import Architecture\n")
    assert _imports(source) == [(2, "archon_search.runtime.api")]


def test_ops_read_answers_only_through_the_public_scoring_package():
    inner = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted((PACKAGE / "ops").glob("*.py"))
        for line, module in _imports(path)
        if module.startswith("archon_search.scoring.")
    ]
    assert not inner, "ops import scoring's public names from `archon_search.scoring`:\n" + "\n".join(inner)
