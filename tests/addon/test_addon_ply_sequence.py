"""File › Import › 4D Gaussian PLY Sequence (see bpy_scripts/ply_sequence_checks.py)."""

import importlib.util

import pytest

from _run import BLENDERS, run_bpy_script

if importlib.util.find_spec("bpy") is None:
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.fixture(scope="module", params=BLENDERS)
def res(request, tmp_path_factory):
    return run_bpy_script("ply_sequence_checks.py", tmp_path_factory.mktemp("plyseq"), blender=request.param)


def test_menu_entry(res):
    assert ["operator", "gen4d.import_ply_sequence|4D Gaussian PLY Sequence (.ply)", True, False] in res["menu"]


def test_sequence_from_another_tool_plays_frame_by_frame(res):
    assert res["op"] == ["FINISHED"]
    assert res["frames"] == 12 and res["fps"] == 12.0 and res["name"].startswith("splat")
    # Numeric order (splat_10 after splat_9), other files in the folder ignored.
    for frame, error in res["position_err"].items():
        assert error < 1e-5, (frame, error)


def test_bad_sequences_are_reported(res):
    assert "same Gaussians" in res["mismatch_error"] and "59" in res["mismatch_error"]
    assert res["objects_added_by_failure"] == 0
    assert "not a numbered .ply" in res["not_numbered_error"]
