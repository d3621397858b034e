"""The package layering of docs/design.md, checked on every import statement (lazy ones
included) by reading the source with ``ast``:

- ``protocol/`` imports nothing from ``backend/``, ``blender_addon/`` or ``samples/``, and
  no third-party package but numpy and pyzmq (it ships inside the Blender extension);
- ``backend/gaussians``, ``backend/render`` and ``backend/optim`` never import
  ``backend/pipeline``, ``backend.server``, ``backend.worker`` or ``backend.jobs``;
- ``blender_addon/`` never imports ``backend`` or torch;
- no import cycle between packages.
"""

import sys
from pathlib import Path

import pytest

from tests.helpers.import_graph import Import, all_imports, component_graph, cycles, imports_of

LOWER_LAYERS = ("backend.gaussians", "backend.render", "backend.optim")
UPPER_LAYERS = ("backend.pipeline", "backend.server", "backend.worker", "backend.jobs")
PROTOCOL_THIRD_PARTY = {"numpy", "zmq"}


def _top(name: str) -> str:
    return name.split(".")[0]


def violations(imports: list[Import]) -> list[str]:
    """Every import that breaks a layering rule, as ``path:line importer -> target (rule)``."""
    out = []
    for imp in imports:
        src, dst = imp.importer, imp.target
        where = f"{imp.path}:{imp.line} {src} -> {dst}"
        if _top(src) == "protocol":
            if _top(dst) in ("backend", "blender_addon", "samples"):
                out.append(f"{where} (protocol must not import the backend or the add-on)")
            elif _top(dst) not in sys.stdlib_module_names and _top(dst) not in PROTOCOL_THIRD_PARTY | {"protocol"}:
                out.append(f"{where} (protocol may use only the standard library, numpy and pyzmq)")
        if any(src == p or src.startswith(p + ".") for p in LOWER_LAYERS):
            if any(dst == p or dst.startswith(p + ".") for p in UPPER_LAYERS):
                out.append(f"{where} (gaussians/render/optim must not import pipeline/server/worker/jobs)")
        if _top(src) == "blender_addon" and _top(dst) in ("backend", "torch"):
            out.append(f"{where} (the add-on must not import the backend or torch)")
    return out


def test_no_layering_violation():
    found = violations(all_imports())
    assert not found, "\n".join(found)


def test_no_import_cycle_between_packages():
    graph = component_graph(all_imports())
    assert "backend.pipeline" in graph and "protocol" in graph  # the graph really was read
    assert cycles(graph) == []


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("rel, text, rule", [
    ("protocol/x.py", "def f():\n    from backend.pipeline import runner\n", "protocol must not"),
    ("protocol/x.py", "import torch\n", "standard library, numpy and pyzmq"),
    ("backend/render/x.py", "from ..pipeline.reconstruct import render_frames\n", "gaussians/render/optim"),
    ("backend/optim/x.py", "def f():\n    import backend.worker\n", "gaussians/render/optim"),
    ("blender_addon/x.py", "import torch.nn\n", "add-on must not"),
])
def test_the_checks_catch_a_violation(tmp_path, rel, text, rule):
    """The rules above are not vacuous: a planted lazy or relative import is reported."""
    path = _write(tmp_path, rel, text)
    found = violations(imports_of(path, tmp_path))
    assert len(found) == 1 and rule in found[0] and f"{rel}:" in found[0]


def test_the_cycle_finder_sees_lazy_cycles(tmp_path):
    a = _write(tmp_path, "backend/render/a.py", "def f():\n    from backend.pipeline import b\n")
    b = _write(tmp_path, "backend/pipeline/b.py", "from backend.render import a\n")
    graph = component_graph(imports_of(a, tmp_path) + imports_of(b, tmp_path))
    assert cycles(graph) == [["backend.pipeline", "backend.render"]]
