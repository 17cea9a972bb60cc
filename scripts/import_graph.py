"""The package's import graph, read from the code: modules and their lines, the edges between
them, and its depth (the longest chain of imports between pipeline's own modules).

    python scripts/import_graph.py            # a table of modules, then the figures
    python scripts/import_graph.py --edges    # also every edge

Every ``import``/``from ... import`` of a ``pipeline`` module counts, wherever it stands
(module level or inside a function); ``TYPE_CHECKING``-only imports do not.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Collection
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_of(name: str) -> Path:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"


def imports(path: Path, modules: Collection[str]) -> list[tuple[str, int]]:
    """Every module ``path`` imports, as an absolute name, with its line (``TYPE_CHECKING``
    blocks aside). ``from pkg import mod`` counts as ``pkg.mod`` when that is one of
    ``modules``, else as ``pkg`` (names from a module)."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(ast.walk(node))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            found += [(t, node.lineno) for t in targets if t in modules] or [(base, node.lineno)]
    return found


def modules() -> dict[str, Path]:
    """Every module of the package, by name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: Collection[str]) -> set[str]:
    """The package's own modules that ``path`` imports (a package counts as its
    ``__init__``)."""
    return {
        target for target, _ in imports(path, known) if target in known
    } - {module_name(path)}


def graph() -> dict[str, set[str]]:
    """Each module's imports of the package's own modules."""
    paths = modules()
    return {name: imports_of(path, paths) for name, path in paths.items()}


def depth(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor: 0 for one that imports no pipeline module, else one more than
    the highest floor it imports."""

    @cache
    def floor(name: str) -> int:
        return 1 + max((floor(dep) for dep in edges[name]), default=-1)

    return {name: floor(name) for name in edges}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every edge too")
    args = parser.parse_args()
    edges = graph()
    floors = depth(edges)
    lines = {name: len(source_of(name).read_text().splitlines()) for name in edges}
    print(f"{'module':<32}{'lines':>7}{'floor':>7}{'imports':>9}")
    for name in sorted(edges, key=lambda n: (floors[n], n)):
        print(f"{name:<32}{lines[name]:>7}{floors[name]:>7}{len(edges[name]):>9}")
    print(f"\n{len(edges)} modules, {sum(lines.values())} lines, "
          f"{sum(len(v) for v in edges.values())} import edges, depth {max(floors.values())}")
    if args.edges:
        for name in sorted(edges):
            for dep in sorted(edges[name]):
                print(f"{name} -> {dep}")


if __name__ == "__main__":
    main()
