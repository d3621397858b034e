"""Run a bpy script from ``tests/addon/bpy_scripts`` in a fresh interpreter (bpy can be
imported only once per process) and return its ``RESULT: {json}`` dict."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "bpy_scripts"
REPO = Path(__file__).resolve().parents[2]


def run_bpy_script(name: str, *args, env: dict | None = None, timeout: float = 300) -> dict:
    """Run ``bpy_scripts/<name>`` with ``args``; fail with its output if it crashes."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT: ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT: "):])
