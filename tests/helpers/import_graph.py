"""The project's import graph, read with ``ast`` (nothing is imported or run).

Every ``import`` statement counts, also the lazy ones inside functions: a lazy import
hides a cycle from Python's import machinery, not from the design. Used by
``tests/test_layering.py`` and ``scripts/code_metrics.py``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Top-level packages that are the project's own code.
PACKAGES = ("protocol", "backend", "blender_addon", "samples")


@dataclass(frozen=True)
class Import:
    """One import: ``importer`` (dotted module) imports ``target`` (dotted, absolute) at
    ``path:line``."""

    importer: str
    target: str
    path: str
    line: int


def module_name(path: Path, root: Path = REPO) -> str:
    """``backend/gaussians/model.py`` → ``backend.gaussians.model``; ``__init__`` → the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files(root: Path = REPO, packages=PACKAGES) -> list[Path]:
    """Every ``.py`` file of the project's packages (no tests, no venvs)."""
    files = []
    for pkg in packages:
        files += sorted((root / pkg).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def imports_of(path: Path, root: Path = REPO) -> list[Import]:
    """Every import in one file, relative imports resolved to absolute dotted names.

    ``from a.b import c`` yields ``a.b.c`` (a submodule or a name in ``a.b``; callers
    cut it to the granularity they need).
    """
    me = module_name(path, root)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(me, a.name, str(path.relative_to(root)), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".") if is_pkg else me.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                out.append(Import(me, f"{mod}.{a.name}" if a.name != "*" else mod, str(path.relative_to(root)),
                                  node.lineno))
    return out


def all_imports(root: Path = REPO) -> list[Import]:
    """Every import in the project's packages."""
    return [imp for f in source_files(root) for imp in imports_of(f, root)]


def component(module: str) -> str:
    """The layer a module belongs to: ``backend.<subpackage>`` for backend subpackages,
    ``backend.<module>`` for top-level backend modules, else the top-level package."""
    parts = module.split(".")
    if parts[0] == "backend" and len(parts) >= 2:
        return ".".join(parts[:2])
    return parts[0]


def component_graph(imports: list[Import]) -> dict[str, set[str]]:
    """Edges between components of the project's own packages (self-edges dropped)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target.split(".")[0] not in PACKAGES:
            continue
        a, b = component(imp.importer), component(imp.target)
        # ``from backend import errors`` names the submodule component, not ``backend``.
        if b == "backend" and imp.target.count(".") >= 1:
            b = ".".join(imp.target.split(".")[:2])
        graph.setdefault(a, set())
        if a != b:
            graph[a].add(b)
            graph.setdefault(b, set())
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)
