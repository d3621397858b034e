"""Blender 4.2–4.4 playback: per-frame meshes in an excluded collection (no Import PLY
node), run on every tested Blender, including bpy 4.2 LTS itself when its environment
exists (see bpy_scripts/fallback_checks.py)."""

import importlib.util

import numpy as np
import pytest

from _run import BLENDERS_WITH_42, run_bpy_script

if importlib.util.find_spec("bpy") is None:
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.fixture(scope="module", params=BLENDERS_WITH_42)
def res(request, tmp_path_factory):
    return run_bpy_script("fallback_checks.py", tmp_path_factory.mktemp("fallback"), blender=request.param)


def test_per_frame_meshes_play_the_frames(res):
    means = [np.asarray(m) for m in res["means"]]
    got = {k: np.asarray(v) for k, v in res["meshes"]["centres"].items()}
    np.testing.assert_allclose(got["0.0"], means[0], atol=1e-6)
    np.testing.assert_allclose(got["1.0"], means[1], atol=1e-6)
    np.testing.assert_allclose(got["3.0"], means[3], atol=1e-6)
    np.testing.assert_allclose(got["2.5"], (means[2] + means[3]) / 2, atol=1e-6)  # fractional blend
    np.testing.assert_allclose(np.asarray(res["meshes"]["loop_5"]), means[1], atol=1e-6)
    assert res["meshes"]["excluded"]
    assert res["meshes"]["frame_objects"] == [f"asset_meshes_frame_{i:04d}" for i in range(4)]


def test_auto_picks_the_path_by_version(res):
    major, minor = (int(x) for x in res["blender"].split(".")[:2])
    assert res["auto_playback"] == ("ply_node" if (major, minor) >= (4, 5) else "meshes")
    if "ply_node" in res:  # both paths evaluate to the same splats
        for key, value in res["ply_node"]["centres"].items():
            np.testing.assert_allclose(np.asarray(res["meshes"]["centres"][key]), np.asarray(value), atol=1e-6)
