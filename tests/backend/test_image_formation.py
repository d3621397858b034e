"""The two image formations (gen4d issue 15): ``"blender"`` composites in linear light with
each splat integrated over Cycles' pixel filter, ``"3dgs"`` is the standard formation; both CPU rasterizers, gradients,
and the model / manifest / config plumbing that carries the choice."""

import math

import numpy as np
import pytest
import torch

from backend.errors import JobError
from backend.gaussians.model_io import build_gaussians4d, load_gaussians4d
from backend.render.frames import premultiplied_to_straight, render_frames
from backend.render.image_formation import linear_to_srgb, rasterize_with_formation, srgb_to_linear
from backend.render.numba_rasterizer import rasterize_numba
from backend.render.rasterize import rasterize
from backend.render.torch_rasterizer import rasterize_torch
from protocol.config import InvalidOptionError, ModelConfig, ReconstructConfig, apply_options
from protocol.formats.image_formation import (BLENDER_FILTER_WIDTH_PX, EPS2D, blackman_harris_variance,
                                             pixel_filter_taps)
from protocol.formats.manifest import Manifest, manifest_from_dict

RENDERERS = {"torch": rasterize_torch, "numba": rasterize_numba}
W = H = 16
F = 20.0


def _camera(B=1, dtype=torch.float32):
    """OpenCV camera at the origin looking down +Z; pixel (8, 8)'s centre is on the ray
    ``x = y = 0.5 / F · z``."""
    viewmats = torch.eye(4, dtype=dtype).expand(B, 4, 4)
    Ks = torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]], dtype=dtype).expand(B, 3, 3)
    return viewmats, Ks


def _on_pixel_centre(z):
    return [0.5 / F * z, 0.5 / F * z, z]


def _two_splats(dtype=torch.float32):
    """Issue 15's two-splat test: dark (0.1, opacity 0.5) in front of light (0.9, opaque),
    both wide (σ = 0.5 m, 3–5 px) and centred on pixel (8, 8)."""
    means = torch.tensor([[_on_pixel_centre(2.0), _on_pixel_centre(3.0)]], dtype=dtype)
    quats = torch.tensor([[[1.0, 0, 0, 0]] * 2], dtype=dtype)
    scales = torch.full((1, 2, 3), 0.5, dtype=dtype)
    opacities = torch.tensor([[0.5, 0.999]], dtype=dtype)
    colors = torch.tensor([[[0.1] * 3, [0.9] * 3]], dtype=dtype)
    return means, quats, scales, opacities, colors


@pytest.mark.parametrize("impl", sorted(RENDERERS))
@pytest.mark.parametrize("formation, expected", [("blender", 0.664), ("3dgs", 0.500)])
def test_two_splats_blend_in_linear_light_under_blender(impl, formation, expected):
    """dark over light: linear-light blending gives 0.664 (what Cycles shows), sRGB-value
    blending 0.500 (what the standard 3DGS rasterizer gives)."""
    viewmats, Ks = _camera()
    c, a, _ = rasterize_with_formation(RENDERERS[impl], formation, *_two_splats(), viewmats, Ks, W, H)
    straight = premultiplied_to_straight(c, a)[0, 8, 8]
    assert straight[3] > 0.99  # "blender" keeps each splat's integral: 0.992 after its pixel filter
    assert straight[:3] == pytest.approx([expected] * 3, abs=2e-3)


def test_dispatcher_defaults_to_3dgs_and_passes_the_formation():
    viewmats, Ks = _camera()
    c3, a3, _ = rasterize(*_two_splats(), viewmats, Ks, W, H)
    cb, ab, _ = rasterize(*_two_splats(), viewmats, Ks, W, H, image_formation="blender")
    assert float(c3[0, 8, 8, 0] / a3[0, 8, 8, 0]) == pytest.approx(0.500, abs=2e-3)
    assert float(cb[0, 8, 8, 0] / ab[0, 8, 8, 0]) == pytest.approx(0.664, abs=2e-3)
    with pytest.raises(JobError) as err:
        rasterize(*_two_splats(), viewmats, Ks, W, H, image_formation="linear")
    assert err.value.code == "invalid_option"


@pytest.mark.parametrize("impl", sorted(RENDERERS))
@pytest.mark.parametrize("formation", ["blender", "3dgs"])
def test_each_formations_2d_filter(impl, formation):
    """A small splat (σ = 0.5 px on screen) centred on pixel (8, 8). ``"3dgs"`` dilates it by
    0.3 px² at full opacity: pixel at offset (i, j) ``o·exp(−0.5(i² + j²)/(σ² + 0.3))``.
    ``"blender"`` applies Cycles' 1.5 px Blackman-Harris filter (variance 0.173 px²) in two
    parts: the splat is convolved with a Gaussian of variance ``s`` = 0.073 px² keeping its
    integral (opacity ``o·σ²/(σ² + s)``), then the composite with the taps
    ``[0.050, 0.900, 0.050]`` per axis (variance 0.100 px²)."""
    viewmats, Ks = _camera()
    z = 2.0
    sigma_px = 0.5
    means = torch.tensor([[_on_pixel_centre(z)]])
    scales = torch.full((1, 1, 3), sigma_px * z / F)
    opacity = 0.9
    _, a, info = rasterize_with_formation(RENDERERS[impl], formation, means, torch.tensor([[[1.0, 0, 0, 0]]]),
                                          scales, torch.tensor([[opacity]]), torch.ones(1, 1, 3), viewmats, Ks, W, H)

    def splat(i, j, s, peak):  # the rasterizers drop a pixel's alpha below 1/255
        value = peak * math.exp(-0.5 * (i * i + j * j) / (sigma_px ** 2 + s))
        return value if value >= 1 / 255 else 0.0

    if formation == "3dgs":
        expected = lambda i, j: splat(i, j, 0.3, opacity)  # noqa: E731
    else:
        taps = pixel_filter_taps()
        assert taps == pytest.approx([0.05007, 0.89986, 0.05007], abs=1e-5)
        s = EPS2D["blender"]
        assert s == pytest.approx(0.17266 - 0.10014, abs=1e-5)
        peak = opacity * sigma_px ** 2 / (sigma_px ** 2 + s)
        expected = lambda i, j: sum(taps[u + 1] * taps[v + 1] * splat(i + u, j + v, s, peak)  # noqa: E731
                                    for u in (-1, 0, 1) for v in (-1, 0, 1))
    for i, j in ((0, 0), (0, 1), (1, 1), (0, 2)):
        assert float(a[0, 8 + j, 8 + i, 0]) == pytest.approx(expected(i, j), rel=5e-3), (i, j)  # σ ≈ 0.5 px: perspective


@pytest.mark.parametrize("impl", sorted(RENDERERS))
def test_antialiased_filter_keeps_a_sub_pixel_splats_coverage(impl):
    """One splat (o = 0.9, σ = 0.3 px): its summed alpha over the image is its integral. With the
    integral-keeping filter (gsplat's ``"antialiased"``) that is ``2π·o·σ²`` whatever the filter's
    variance ``s``; the classic dilation inflates it to ``2π·o·(σ² + s)``. The 1/255 alpha
    cut-off removes ``2π(σ² + s)/255`` from either (the mass of a 2D Gaussian below a fraction
    ``t`` of its peak is ``t`` of the whole)."""
    viewmats, Ks = _camera()
    z, sigma_px, o, s = 2.0, 0.3, 0.9, 0.3
    args = (torch.tensor([[_on_pixel_centre(z)]], dtype=torch.float64),
            torch.tensor([[[1.0, 0, 0, 0]]], dtype=torch.float64),
            torch.full((1, 1, 3), sigma_px * z / F, dtype=torch.float64),
            torch.tensor([[o]], dtype=torch.float64), torch.ones(1, 1, 3, dtype=torch.float64), viewmats.double(),
            Ks.double(), W, H)
    _, a_aa, _ = RENDERERS[impl](*args, eps2d=s, antialiased=True)
    _, a_cl, _ = RENDERERS[impl](*args, eps2d=s, antialiased=False)
    cut = 2 * math.pi * (sigma_px ** 2 + s) / 255
    assert float(a_aa.sum()) == pytest.approx(2 * math.pi * o * sigma_px ** 2 - cut, rel=0.02)  # 0.499
    assert float(a_cl.sum()) == pytest.approx(2 * math.pi * o * (sigma_px ** 2 + s) - cut, rel=0.02)  # 2.196


def test_blackman_harris_variance_is_cycles_filter_table():
    """The closed form against a numerical integral of Cycles' ``filter_func_blackman_harris``
    over ``[−w, w]`` (``filter_table`` doubles the width)."""
    for w in (0.5, 1.5, 2.0):
        x = np.linspace(-w, w, 200001)
        v = 2 * np.pi * (x / (2 * w) + 0.5)
        f = 0.35875 - 0.48829 * np.cos(v) + 0.14128 * np.cos(2 * v) - 0.01168 * np.cos(3 * v)
        assert blackman_harris_variance(w) == pytest.approx(float((f * x * x).sum() / f.sum()), rel=1e-6)
    taps = pixel_filter_taps(BLENDER_FILTER_WIDTH_PX)
    taps_variance = sum(t * (i - 1) ** 2 for i, t in enumerate(taps))
    assert EPS2D["blender"] + taps_variance == pytest.approx(blackman_harris_variance(BLENDER_FILTER_WIDTH_PX))
    with pytest.raises(ValueError):
        blackman_harris_variance(-1.0)


def test_srgb_transfer_functions_are_exact_inverses():
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12, rtol=0)
    assert float(srgb_to_linear(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(0.214041, abs=1e-6)
    assert float(srgb_to_linear(torch.tensor(0.02, dtype=torch.float64))) == pytest.approx(0.02 / 12.92)
    assert float(srgb_to_linear(torch.tensor(-0.1))) == 0.0


@pytest.mark.parametrize("impl", sorted(RENDERERS))
def test_one_splat_over_a_background_looks_the_same_in_both_formations(impl):
    """With one Gaussian per pixel the formations agree (same dilation forced): the straight
    colour is the Gaussian's own and the background composites in sRGB values, like the
    ground-truth footage (straight sRGB RGBA over a colour)."""
    viewmats, Ks = _camera()
    args = (torch.tensor([[_on_pixel_centre(2.0)]]), torch.tensor([[[1.0, 0, 0, 0]]]), torch.full((1, 1, 3), 0.2),
            torch.tensor([[0.6]]), torch.tensor([[[0.2, 0.5, 0.8]]]), viewmats, Ks, W, H)
    bg = torch.tensor([[0.9, 0.3, 0.1]])
    c3, a3, _ = rasterize_with_formation(RENDERERS[impl], "3dgs", *args, backgrounds=bg, eps2d=0.3)
    cb, ab, _ = rasterize_with_formation(RENDERERS[impl], "blender", *args, backgrounds=bg, eps2d=0.3,
                                         antialiased=False, composite_filter=False)
    assert (ab < 0.99).any() and (ab > 0.1).any()
    torch.testing.assert_close(ab, a3)
    torch.testing.assert_close(cb, c3, atol=2e-5, rtol=0)


def _grad_scene(dtype=torch.float64):
    """Six overlapping semi-transparent Gaussians in front of the camera."""
    g = torch.Generator().manual_seed(5)
    n = 6
    z = 2.0 + torch.rand(n, generator=g, dtype=dtype)
    xy = (torch.rand(n, 2, generator=g, dtype=dtype) - 0.5) * 0.6
    means = torch.cat([xy, z[:, None]], 1)[None]
    quats = torch.randn(1, n, 4, generator=g, dtype=dtype)
    scales = (0.08 + 0.12 * torch.rand(1, n, 3, generator=g, dtype=dtype))
    opacities = 0.3 + 0.4 * torch.rand(1, n, generator=g, dtype=dtype)
    colors = 0.05 + 0.9 * torch.rand(1, n, 3, generator=g, dtype=dtype)
    return means, quats, scales, opacities, colors


@pytest.mark.parametrize("impl", sorted(RENDERERS))
def test_blender_formation_gradients_pass_gradcheck(impl):
    """Finite differences agree with autograd through decode → rasterize → encode → background."""
    means, quats, scales, opacities, colors = _grad_scene()
    viewmats, Ks = _camera(dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    wc = torch.rand(1, H, W, 3, generator=g, dtype=torch.float64)
    wa = torch.rand(1, H, W, 1, generator=g, dtype=torch.float64)
    bg = torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64)

    def f(m, s, o, c):
        out_c, out_a, _ = rasterize_with_formation(RENDERERS[impl], "blender", m, quats, s, o, c, viewmats, Ks, W, H,
                                                   backgrounds=bg)
        return (out_c * wc).sum() + (out_a * wa).sum()

    inputs = tuple(x.clone().requires_grad_(True) for x in (means, scales, opacities, colors))
    f(*inputs).backward()
    for x in inputs:
        assert x.grad.abs().max() > 1e-3
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_numba_and_torch_agree_under_blender_formation_in_float32():
    """The training path (Numba, float32) matches the torch reference, values and gradients."""
    viewmats, Ks = _camera()
    out = []
    for impl in (rasterize_torch, rasterize_numba):
        inputs = [x.float().clone().requires_grad_(True) for x in _grad_scene()]
        c, a, _ = rasterize_with_formation(impl, "blender", *inputs, viewmats, Ks, W, H,
                                           backgrounds=torch.tensor([[0.5, 0.5, 0.5]]))
        (c.square().sum() + a.sum()).backward()
        out.append((c.detach(), [x.grad for x in inputs]))
    torch.testing.assert_close(out[1][0], out[0][0], atol=1e-5, rtol=1e-4)
    for g_numba, g_torch in zip(out[1][1], out[0][1]):
        torch.testing.assert_close(g_numba, g_torch, atol=1e-4 * g_torch.abs().max().item(), rtol=1e-3)


# ---------------------------------------------------------------- model / manifest / config


def _model_inputs(n=5):
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([_on_pixel_centre(2.0)] * n) + 0.05 * torch.randn(n, 3, generator=g)
    return (means, torch.tensor([[1.0, 0, 0, 0]] * n), torch.full((n, 3), math.log(0.3)), torch.zeros(n),
            0.3 * torch.randn(n, 1, 3, generator=g))


def test_config_default_formation_and_the_name_check():
    assert ReconstructConfig().model.image_formation == "blender"
    assert apply_options(ReconstructConfig(), {"model.image_formation": "3dgs"}).model.image_formation == "3dgs"
    with pytest.raises(InvalidOptionError):
        apply_options(ReconstructConfig(), {"image_formation": "linear"})


@pytest.mark.parametrize("representation", ["trajectory", "static"])
def test_model_carries_its_formation_through_save_load_and_rendering(representation):
    model = build_gaussians4d(ModelConfig(representation=representation, image_formation="blender"),
                              *_model_inputs(), n_times=2)
    assert model.image_formation == "blender"
    state = model.state()
    assert state["image_formation"] == "blender"
    assert load_gaussians4d(state).image_formation == "blender"
    legacy = {k: v for k, v in state.items() if k != "image_formation"}
    assert load_gaussians4d(legacy).image_formation == "3dgs"
    with pytest.raises(ValueError):
        load_gaussians4d({**state, "image_formation": "linear"})

    viewmats, Ks = _camera()
    t = torch.zeros(1)
    with torch.no_grad():
        c_b, a_b, _ = render_frames(model, t, viewmats, Ks, W, H)
        model.image_formation = "3dgs"
        c_s, a_s, _ = render_frames(model, t, viewmats, Ks, W, H)
        g = model.at(t)
        expected = rasterize(**g.rasterization_inputs(viewmats), viewmats=viewmats, Ks=Ks, width=W, height=H,
                             image_formation="blender")
    torch.testing.assert_close(torch.cat([c_s, a_s], -1), torch.cat(rasterize(
        **g.rasterization_inputs(viewmats), viewmats=viewmats, Ks=Ks, width=W, height=H)[:2], -1))
    torch.testing.assert_close(torch.cat([c_b, a_b], -1), torch.cat(expected[:2], -1))
    assert (c_b - c_s).abs().max() > 1e-3


def test_manifest_records_the_formation_and_reads_old_ones_as_3dgs():
    m = Manifest(frame_count=1, frame_files=["frames/frame_0000.ply"], image_formation="blender")
    d = m.to_dict()
    assert d["image_formation"] == "blender"
    assert manifest_from_dict(d).image_formation == "blender"
    old = {k: v for k, v in d.items() if k != "image_formation"}
    assert manifest_from_dict(old).image_formation == "3dgs"
    with pytest.raises(ValueError):
        Manifest(frame_count=1, frame_files=["frames/frame_0000.ply"], image_formation="linear")
