"""Run a bpy script from ``tests/addon/bpy_scripts`` in a fresh interpreter (bpy can be
imported only once per process) and return its ``RESULT: {json}`` dict.

Three Blender versions are tested: the ``bpy`` module of the test environment (5.0.1),
bpy 4.5.15 (Blender 4.5 LTS) in ``.venv-bpy45`` and bpy 4.2.23 (4.2 LTS) in ``.venv-bpy42``
(made by ``scripts/setup.sh``; no torch, so only scripts that need bpy, numpy, plyfile and
pyzmq run there). :data:`BLENDERS` is the
parameter list for fixtures: a missing 4.5 environment is a skip with the reason locally
and a failure in CI (``CI=true``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "bpy_scripts"
REPO = Path(__file__).resolve().parents[2]
BLENDER_PYTHONS = {"5.0": Path(sys.executable), "4.5": REPO / ".venv-bpy45" / "bin" / "python",
                   "4.2": REPO / ".venv-bpy42" / "bin" / "python"}


def _blender_param(version: str):
    if BLENDER_PYTHONS[version].is_file() or os.environ.get("CI") == "true":
        return pytest.param(version, id=f"blender{version}")
    return pytest.param(version, id=f"blender{version}", marks=pytest.mark.skip(
        reason=f"no bpy {version} environment ({BLENDER_PYTHONS[version]}); run scripts/setup.sh"))


#: Fixture parameters: every tested Blender version (4.2 LTS only for the checks that
#: cover its own playback path and installation: tests/addon/test_addon_fallback.py, the
#: package test).
BLENDERS = [_blender_param(v) for v in ("5.0", "4.5")]
BLENDERS_WITH_42 = BLENDERS + [_blender_param("4.2")]


def run_bpy_script(name: str, *args, env: dict | None = None, timeout: float = 300, blender: str = "5.0") -> dict:
    """Run ``bpy_scripts/<name>`` with ``args`` under Blender ``blender`` ("5.0", "4.5" or "4.2");
    fail with its output if it crashes or prints no result.

    Raises:
        AssertionError: the script failed; FileNotFoundError: that Blender's environment is missing.
    """
    python = BLENDER_PYTHONS[blender]
    if not python.is_file():
        raise FileNotFoundError(f"no bpy {blender} environment at {python}; run scripts/setup.sh")
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(python), str(SCRIPTS / name), *map(str, args)], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT: ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"{name} failed on bpy {blender} (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT: "):])
