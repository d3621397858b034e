"""View-dependent colour (backend.gaussians.sh): the basis is gsplat's / 3DGS's (values, signs,
order), it is orthonormal, degree 0 is the DC colour, and a fit with degree 1 reproduces a
colour that changes with the viewing side where degree 0 cannot."""

import math

import pytest
import torch

from backend.cameras import c2w_blender_to_viewmat, look_at_c2w
from backend.gaussians.gaussians import Gaussians, sh0_to_rgb
from backend.gaussians.sh import camera_centres, sh_basis, sh_to_rgb
from backend.render.rasterize import rasterize


def look_at_viewmat(eye, target):
    return c2w_blender_to_viewmat(look_at_c2w(eye.tolist(), target.tolist())).float()


def _unit_dirs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)


def _sloan_reference(dirs):
    """gsplat's ``_eval_sh_bases_fast`` (Sloan's recurrences, JCGT 2013) for 16 bases,
    written out here independently of the polynomial form the module uses."""
    x, y, z = dirs.unbind(-1)
    r = torch.empty(*dirs.shape[:-1], 16, dtype=dirs.dtype)
    r[..., 0] = 0.2820947917738781
    a = -0.48860251190292
    r[..., 2], r[..., 3], r[..., 1] = -a * z, a * x, a * y
    z2 = z * z
    b, a = -1.092548430592079 * z, 0.5462742152960395
    c1, s1 = x * x - y * y, 2 * x * y
    r[..., 6] = 0.9461746957575601 * z2 - 0.3153915652525201
    r[..., 7], r[..., 5], r[..., 8], r[..., 4] = b * x, b * y, a * c1, a * s1
    c, b, a = -2.285228997322329 * z2 + 0.4570457994644658, 1.445305721320277 * z, -0.5900435899266435
    c2, s2 = x * c1 - y * s1, x * s1 + y * c1
    r[..., 12] = z * (1.865881662950577 * z2 - 1.119528997770346)
    r[..., 13], r[..., 11], r[..., 14], r[..., 10], r[..., 15], r[..., 9] = c * x, c * y, b * c1, b * s1, a * c2, a * s2
    return r


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_basis_equals_gsplats_sloan_evaluation(degree):
    dirs = _unit_dirs(500)
    k = (degree + 1) ** 2
    torch.testing.assert_close(sh_basis(degree, dirs), _sloan_reference(dirs)[..., :k], rtol=0, atol=1e-12)


def test_basis_is_orthonormal_on_the_sphere():
    dirs = _unit_dirs(400_000, seed=1)
    y = sh_basis(3, dirs)
    gram = 4 * math.pi * (y.T @ y) / len(dirs)  # Monte Carlo ∫ Y_i Y_j dΩ
    torch.testing.assert_close(gram, torch.eye(16, dtype=gram.dtype), rtol=0, atol=0.02)


def test_degree_one_signs_follow_3dgs():
    c1 = 0.4886025119029199
    basis = sh_basis(1, torch.eye(3, dtype=torch.float64))  # along +x, +y, +z
    assert basis[0, 3] == pytest.approx(-c1) and basis[1, 1] == pytest.approx(-c1) and basis[2, 2] == pytest.approx(c1)


def test_camera_centres_invert_the_viewmat():
    eye = torch.tensor([[1.0, -2.0, 0.5]])
    vm = look_at_viewmat(eye[0], torch.zeros(3))[None]
    torch.testing.assert_close(camera_centres(vm), eye, atol=1e-5, rtol=0)


def test_degree_zero_is_the_dc_colour_and_higher_degrees_need_cameras():
    sh = torch.randn(5, 1, 3)
    vm = look_at_viewmat(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3))[None]
    torch.testing.assert_close(sh_to_rgb(sh, torch.randn(5, 3), vm)[0], sh0_to_rgb(sh[:, 0]))
    g = Gaussians(torch.zeros(5, 3), torch.tensor([[1.0, 0, 0, 0]]).expand(5, 4), torch.zeros(5, 3), torch.zeros(5),
                  torch.zeros(5, 4, 3))
    with pytest.raises(ValueError, match="viewmats"):
        g.rasterization_inputs()


@pytest.mark.parametrize("degree, fits", [(0, False), (1, True)])
def test_a_colour_that_depends_on_the_side_needs_degree_one(degree, fits):
    """A Gaussian looks red from −y and blue from +y; fitted through the rasterizer, degree 1
    reproduces both views, degree 0 settles on their mean."""
    n = 1
    eyes = torch.tensor([[0.0, -3.0, 0.0], [0.0, 3.0, 0.0]])
    vms = torch.stack([look_at_viewmat(e, torch.zeros(3)) for e in eyes])
    Ks = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]).expand(2, 3, 3)
    target = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.1, 0.9]])
    sh = torch.zeros(n, (degree + 1) ** 2, 3, requires_grad=True)
    opt = torch.optim.Adam([sh], lr=0.05)
    g = lambda: Gaussians(torch.zeros(2, n, 3), torch.tensor([1.0, 0, 0, 0]).expand(2, n, 4),  # noqa: E731
                          torch.full((2, n, 3), math.log(0.3)), torch.full((2, n), 4.0), sh.expand(2, n, -1, 3))
    for _ in range(300):
        colors, alphas, _ = rasterize(**g().rasterization_inputs(vms), viewmats=vms, Ks=Ks, width=32, height=32)
        centre = colors[:, 16, 16] / alphas[:, 16, 16]
        loss = (centre - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    err = (centre.detach() - target).abs().max().item()
    assert (err < 0.02) if fits else (err > 0.3)
