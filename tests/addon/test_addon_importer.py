"""The importer, run with real bpy in a subprocess (see bpy_scripts/importer_checks.py)."""

import importlib.util

import pytest

from _run import BLENDERS, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)

TOL = 1e-5


@pytest.fixture(scope="module", params=BLENDERS)
def res(request, tmp_path_factory):
    return run_bpy_script("importer_checks.py", tmp_path_factory.mktemp("importer"), blender=request.param)


def test_cache_and_driver(res):
    assert res["cache_files"] == ["frame_0000.ply", "frame_0001.ply", "frame_0002.ply"]
    # Lean cache frames: only what changes over time. The synthetic result only moves its
    # Gaussians, so colours, alphas, scales and rotations are converted once and stored on
    # the mesh (no raw PLY properties left); the spinning one keeps its rotations in the frames.
    assert res["cache_props"] == ["x", "y", "z"]
    assert res["mesh_attrs"] == ["gen4d_alpha", "gen4d_color", "gen4d_rotation", "gen4d_scale"]
    assert res["spin_cache_props"] == ["x", "y", "z", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert res["driven"]
    assert res["simple_expression"]  # evaluates without Python auto-exec
    assert res["count"] == 200


def test_positions_follow_frame_and_equal_ply(res):
    assert res["frame_diff"] > 0.05  # frames 0 and 2 differ
    for key in ("driver_err0", "driver_err2", "ply_err", "direct_err0", "direct_err2",
                "clamp_err_hi", "clamp_err_lo", "half_err", "rel_err1"):
        assert res[key] < TOL, key


def test_keyframed_frame(res):
    assert res["key_err1"] < TOL
    assert res["key_err10"] < TOL


def test_splat_attributes_and_transforms(res):
    assert res["color_err"] < TOL
    assert res["alpha_err"] < TOL
    assert res["scale_err"] < 1e-5
    assert res["rot_err"] < 1e-5


def test_viewport_controls(res):
    # The threshold removes exactly the splats whose opacity is below it (counted in numpy).
    assert res["threshold_count"] == res["threshold_expected"] < res["count"]
    assert res["threshold_alpha_min"] >= res["threshold_value"] - 1e-6
    # 25% display: a binomial draw over 200 splats (about 50, well inside 25..80), the same
    # subset on every evaluation, and all splats back at 1.
    assert 25 <= res["fraction_count"] <= 80 and res["fraction_stable"]
    assert res["fraction_restored"] == res["count"]


def test_relative_cache_beside_blend(res):
    assert res["rel_cache"] == "//gen4d_cache/saved/"
    assert res["rel_cache_exists"]


def test_missing_result_is_a_clear_error(res):
    assert "manifest.json not found" in res["missing_error"]


def test_retime_modes_loop_ping_pong_and_hold(res):
    """Frame outside [0, T−1] (T = 3): loop wraps (2.5 blends frame 2 into frame 0),
    ping-pong reflects (3 → 1, 4 → 0, 5 → 1), hold clamps; hold is the default."""
    assert res["retime_default"] == 0
    assert len(res["retime_err"]) == 9
    for key, value in res["retime_err"].items():
        assert value < TOL, key


def test_fractional_frame_blends_rotations(res):
    """Frame 0.25 / 0.5 rotate each splat by the slerp (shorter arc) of its neighbouring
    frames' quaternions (the frames differ by 0.6 rad about Z)."""
    assert res["rot_frames_differ"] > 0.3
    for key, value in res["rot_blend_err"].items():
        assert value < 1e-4, key
