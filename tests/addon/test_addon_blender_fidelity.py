"""Cycles at the add-on's recommended settings ("Prepare Scene for Splats") vs the backend
rasterizer's render of the same tiny imported asset (bpy_scripts/fidelity_prepared.py),
both in the default ``"blender"`` image formation.

Issue 15's targets are Cycles within 32 dB (full) / 27 dB (object region) of the backend's
render and a mean colour bias in the object region within ±3/255; the bounds below are
tighter, a few dB under what the final-render splat shapes (camera-facing EWA footprints,
blender_addon/importer/nodes.py) measure, so a regression towards the old icospheres fails.
Measured at 64 px and 64 samples; benchmarks/blender_fidelity.py keeps the full figures
(demo and D-NeRF assets).
"""

import importlib.util
import json

import pytest

from _run import REPO, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)


# Measured at 64 px, 64 samples, bpy 5.0.1: 39.86 / 35.79 dB, colour bias -0.02/255, alpha bias
# -0.08/255 (alpha area 0.999). With the viewport's icospheres as the render shape (before the
# camera-facing footprints; 16 samples): 33.31 / 29.24 dB, colour bias +0.02, alpha bias -0.9
# (area 0.990). Before the "blender" formation (a "3dgs" backend render): 26.52 / 22.60 dB,
# colour bias +11.0/255, alpha bias -13.4/255.
PSNR_MIN = 37.0
PSNR_OBJECT_MIN = 33.0
COLOUR_BIAS_MAX = 1.5
ALPHA_BIAS_MAX = 1.5


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    res = run_bpy_script("fidelity_prepared.py", tmp_path_factory.mktemp("fid"), 64, 64, timeout=600)
    out = REPO / "out" / "tests"
    out.mkdir(parents=True, exist_ok=True)
    (out / "blender_fidelity_prepared.json").write_text(json.dumps(res, indent=2))
    return res


def test_recommended_settings_were_applied(res):
    paths = {c.split(":")[0] for c in res["changes"]}
    assert {"cycles.transparent_max_bounces", "view_settings.view_transform", "render.film_transparent"} <= paths
    assert res["non_white_fraction"] > 0.1


def test_cycles_is_within_37_33_db_of_the_backend(res):
    assert res["psnr"] >= PSNR_MIN, res
    assert res["psnr_object"] >= PSNR_OBJECT_MIN, res


def test_colour_and_alpha_bias_within_1_5_of_255(res):
    assert abs(res["colour_bias"]) <= COLOUR_BIAS_MAX, res
    assert abs(res["alpha_bias"]) <= ALPHA_BIAS_MAX, res
