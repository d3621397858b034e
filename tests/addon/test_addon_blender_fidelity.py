"""Cycles at the add-on's recommended settings ("Prepare Scene for Splats") vs the backend
rasterizer's render of the same tiny imported asset (bpy_scripts/fidelity_prepared.py).

The bounds are what the backend renders today (colours blended as sRGB values, gsplat's
0.3 px² dilation) minus a margin, measured at 64 px and 16 samples; they guard against
regressions in the importer, the material and the recommended settings. They are NOT the
issue 15 targets (32 / 27 dB, bias within ±3/255), which need the fit to form the image the
way Blender does; benchmarks/blender_fidelity.py keeps the full figures on the demo asset.
"""

import importlib.util
import json

import pytest

from _run import REPO, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)


# Measured at 64 px, 16 samples, bpy 5.0.1: 26.52 / 22.60 dB, colour bias +11.0/255 (Cycles
# lighter), alpha bias -13.4/255 (alpha area 0.86). Bounds: 1 dB and 3/255 (4 for alpha) looser.
PSNR_MIN = 25.5
PSNR_OBJECT_MIN = 21.6
COLOUR_BIAS_MAX = 14.0
ALPHA_BIAS_MAX = 17.5


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


def test_cycles_is_within_the_measured_bound_of_the_backend(res):
    assert res["psnr"] >= PSNR_MIN, res
    assert res["psnr_object"] >= PSNR_OBJECT_MIN, res


def test_colour_and_alpha_bias_stay_within_the_measured_bound(res):
    assert abs(res["colour_bias"]) <= COLOUR_BIAS_MAX, res
    assert abs(res["alpha_bias"]) <= ALPHA_BIAS_MAX, res
