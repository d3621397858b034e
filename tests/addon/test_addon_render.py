"""A tiny Cycles CPU render of imported assets (see bpy_scripts/render_check.py)."""

import importlib.util

import pytest

from _run import BLENDERS, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.fixture(scope="module", params=BLENDERS)
def res(request, tmp_path_factory):
    return run_bpy_script("render_check.py", tmp_path_factory.mktemp("render"), blender=request.param)


def test_asset_is_visible(res):
    assert res["cloud_alpha_max"] > 0.5
    assert res["cloud_pixels_over_half"] > 20


def test_viewport_display_thins_the_viewport_but_never_a_render(res):
    """Viewport Display 0 leaves no splat in the viewport, yet a render (Is Viewport false)
    draws every one: the image is the same as at 1."""
    assert res["viewport_count_at_display_0"] == 0
    assert res["display_0_render_max_diff"] < 1e-3


def test_single_splat_has_gaussian_alpha_profile(res):
    # sigma 0.1 m, opacity sigmoid(8): a Gaussian profile, not a hard disc.
    assert res["one_peak"] > 0.85
    assert res["one_fit_r2"] > 0.97
    assert res["one_sigma_fit"] == pytest.approx(0.1, rel=0.15)
