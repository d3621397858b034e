"""Design metrics of a gen4d tree: the longest functions, how many places write each shared
convention, and the import cycles between packages. Prints a table and one JSON line.

    python scripts/code_metrics.py [--root DIR]     # DIR: a checkout (default: this one)

The convention counts are regular expressions over the project's source (tests excluded):
each counts the places that *spell out* a convention rather than calling the one module
that owns it, so 1 is the goal.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.import_graph import all_imports, component_graph, cycles  # noqa: E402

CODE_DIRS = ("protocol", "backend", "blender_addon", "samples", "scripts", "benchmarks")

#: convention -> regex whose matches are the places it is written out.
CONVENTIONS = {
    "SH_C0 constant": r"0\.2820947917",
    "PLY property layout": r"[\"']f_dc_0[\"']|f\"f_dc_\{|[\"']rot_0[\"']\s*,\s*[\"']rot_1",
    "manifest format/version written": r"[\"']format_version[\"']\s*:",
    "time grid i/(T-1)": r"/\s*\((?:T|n|count|frame_count|n_frames|n_times|len\(frames\))\s*-\s*1\)"
                         r"|linspace\(0\.0,\s*1\.0",
    "transforms frame record built": r"[\"']transform_matrix[\"']\s*:",
    "terminal job states": r"[\"'](?:completed|failed|cancelled)[\"'],\s*[\"'](?:completed|failed|cancelled)[\"'],"
                           r"\s*[\"'](?:completed|failed|cancelled)[\"']",
    "composite over background": r"\[\.\.\.,\s*3:\]\s*\+\s*\(1\s*-|\(1\s*-\s*\w+\[\.\.\.,\s*3:\]\)"
                                 r"|\*\s*alpha\s*\+\s*\(1(?:\.0)?\s*-\s*alpha\)",
    "image extensions list": r"[\"']\.jpe?g[\"']\s*,",
    "presets tables": r"^\s*(?:[A-Z_]*PRESETS)\s*(?::[^=]*)?=\s*[{(]",
}


def python_files(root: Path) -> list[Path]:
    """Source files of the project's code folders (no tests, no venvs)."""
    out = []
    for d in CODE_DIRS:
        out += [p for p in sorted((root / d).rglob("*.py")) if "__pycache__" not in p.parts]
    return out


def longest_functions(files: list[Path], root: Path, top: int = 5) -> list[tuple[int, str]]:
    """``(lines, "path:line name")`` of the longest functions, body and docstring included."""
    rows = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)[:top]


def convention_places(files: list[Path], root: Path) -> dict[str, list[str]]:
    """Per convention, the ``path:line`` of every place that writes it out."""
    out = {name: [] for name in CONVENTIONS}
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue  # this file's own patterns
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name, rx in CONVENTIONS.items():
                if re.search(rx, line):
                    out[name].append(f"{path.relative_to(root)}:{i}")
    return out


def main(argv=None) -> int:
    """Print the metrics of ``--root`` and a final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    root = args.root.resolve()
    files = python_files(root)
    longest = longest_functions(files, root)
    places = convention_places(files, root)
    cyc = cycles(component_graph(all_imports(root)))
    print("longest functions:")
    for n, where in longest:
        print(f"  {n:4d}  {where}")
    print("places each convention is written:")
    for name, where in places.items():
        print(f"  {len(where):3d}  {name}: {', '.join(where)}")
    print(f"import cycles between packages: {cyc or 'none'}")
    print(json.dumps({"longest_function": longest[0][0], "longest_function_at": longest[0][1],
                      "conventions": {k: len(v) for k, v in places.items()}, "cycles": cyc}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
