"""Render fidelity: an imported asset rendered by Cycles (the bpy module, CPU) matches the
backend's own rasterization of the same Gaussians at the same camera, and animated
renders are not stills (see bpy_scripts/fidelity_check.py). The side-by-side image
(Cycles | rasterizer | 4x difference, on white) is copied to
``out/tests/render_fidelity.png`` for a person to look at."""

import importlib.util
import shutil

import pytest

from _run import REPO, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)

SIZE = 96


@pytest.fixture(scope="module")
def cycles(tmp_path_factory):
    work = tmp_path_factory.mktemp("fidelity")
    res = run_bpy_script("fidelity_check.py", work, "CYCLES", SIZE, timeout=600)
    out = REPO / "out" / "tests"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "side_by_side.png", out / "render_fidelity.png")
    return res


def test_cycles_matches_the_rasterizer(cycles):
    assert cycles["non_white_fraction"] > 0.1  # the asset fills a good part of the frame
    assert cycles["psnr_vs_rasterizer"] >= 25.0
    assert cycles["psnr_vs_rasterizer_object"] >= 20.0


def test_animated_render_is_not_a_still(cycles):
    assert cycles["frames_differ_mean_abs"] > 0.01


def test_eevee_renders_the_asset_in_a_subprocess(tmp_path):
    """Headless Eevee (software EGL) runs in its own process, so an abort there cannot take
    the test run down; it produces a non-empty, animated image with the same material."""
    res = run_bpy_script("fidelity_check.py", tmp_path, "BLENDER_EEVEE", 64, timeout=600)
    assert res["non_white_fraction"] > 0.1
    assert res["frames_differ_mean_abs"] > 0.01


def test_sh_degree_3_renders_view_dependent_colour(tmp_path):
    """A degree-3 asset: the material evaluates all 15 higher SH terms in the camera → splat
    direction. Compared with the rasterizer fed by gsplat's reference SH evaluation (per
    Gaussian, direction camera → centre). Measured: 25.4 dB, against 20.5 dB for the same
    render compared with DC-only colours; the bar leaves 1.4 dB for the per-pixel vs
    per-centre direction and renderer noise."""
    res = run_bpy_script("fidelity_check.py", tmp_path, "CYCLES", SIZE, 3, timeout=600)
    assert res["psnr_vs_rasterizer"] >= 24.0
    assert res["psnr_vs_rasterizer"] >= res["psnr_vs_rasterizer_dc_only"] + 3.0
