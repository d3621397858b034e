"""Cycles at the add-on's recommended settings ("Prepare Scene for Splats") vs the backend
rasterizer's render of the same tiny imported asset (bpy_scripts/fidelity_prepared.py),
both in the default ``"blender"`` image formation.

The bounds are issue 15's targets: Cycles within 32 dB (full) / 27 dB (object region) of the
backend's render, mean colour bias in the object region within ±3/255. Measured at 64 px and
16 samples; benchmarks/blender_fidelity.py keeps the full figures (demo and D-NeRF assets).
"""

import importlib.util
import json

import pytest

from _run import REPO, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)


# Measured at 64 px, 16 samples, bpy 5.0.1: 33.31 / 29.24 dB, colour bias +0.02/255, alpha bias
# -0.9/255 (alpha area 0.990). Before the "blender" formation (a "3dgs" backend render):
# 26.52 / 22.60 dB, colour bias +11.0/255, alpha bias -13.4/255.
PSNR_MIN = 32.0
PSNR_OBJECT_MIN = 27.0
COLOUR_BIAS_MAX = 3.0
ALPHA_BIAS_MAX = 4.0


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    res = run_bpy_script("fidelity_prepared.py", tmp_path_factory.mktemp("fid"), 64, 16, timeout=600)
    out = REPO / "out" / "tests"
    out.mkdir(parents=True, exist_ok=True)
    (out / "blender_fidelity_prepared.json").write_text(json.dumps(res, indent=2))
    return res


def test_recommended_settings_were_applied(res):
    paths = {c.split(":")[0] for c in res["changes"]}
    assert {"cycles.transparent_max_bounces", "view_settings.view_transform", "render.film_transparent"} <= paths
    assert res["non_white_fraction"] > 0.1


def test_cycles_is_within_32_27_db_of_the_backend(res):
    assert res["psnr"] >= PSNR_MIN, res
    assert res["psnr_object"] >= PSNR_OBJECT_MIN, res


def test_colour_bias_within_3_of_255_and_alpha_bias_small(res):
    assert abs(res["colour_bias"]) <= COLOUR_BIAS_MAX, res
    assert abs(res["alpha_bias"]) <= ALPHA_BIAS_MAX, res
