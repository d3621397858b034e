"""Process-level end to end: a real backend subprocess, the add-on's client inside real
bpy (another subprocess), import with the add-on's importer, and the evaluated geometry
checked against the exported PLY files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.gaussians.ply import read_gaussians_ply
from samples.make_scene import make_scene_subprocess
from tests.helpers.backend_proc import BackendProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_footage(tmp_path_factory):
    """Blender-rendered wobble footage, small: 4 training cameras x 4 times at 32 px."""
    out = tmp_path_factory.mktemp("footage") / "wobble"
    return make_scene_subprocess("wobble", out, size=32, n_train=4, n_test=1, n_times=4, samples=4)


@pytest.mark.timeout(300)
def test_submit_in_bpy_import_and_compare_with_ply(tmp_path, small_footage):
    backend = BackendProcess(tmp_path / "backend")
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "e2e" / "bpy_submit_and_import.py"), backend.address,
             str(tmp_path / "backend" / "gen4d.key"), str(small_footage), str(tmp_path / "e2e.blend")],
            capture_output=True, text=True, timeout=280, env=env, cwd=ROOT)
        assert backend.proc.poll() is None, "backend died"
    finally:
        backend.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["seen"][-1] == "ready", report["seen"]
    frames = report["frames"]
    assert frames == 4
    result = Path(report["result_dir"])
    manifest = json.loads((result / "manifest.json").read_text())
    first = np.asarray(report["positions"]["0"], dtype=np.float32)
    last = np.asarray(report["positions"][str(frames - 1)], dtype=np.float32)
    ply_first = read_gaussians_ply(result / manifest["frame_files"][0])["means"]
    ply_last = read_gaussians_ply(result / manifest["frame_files"][-1])["means"]
    assert first.shape == ply_first.shape == (manifest["gaussian_count"], 3)
    # Evaluated positions in Blender equal the exported PLY positions, frame by frame.
    np.testing.assert_allclose(first, ply_first, atol=1e-5)
    np.testing.assert_allclose(last, ply_last, atol=1e-5)
    # And they move: the asset is animated, not a still.
    assert np.abs(first - last).max() > 1e-4
    assert (tmp_path / "e2e.blend").is_file()
