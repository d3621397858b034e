"""Both CPU rasterizers (pure PyTorch, and the compiled Numba compositor) against a slow, obviously-correct per-pixel reference (gsplat 1.5.3
semantics, docs/design.md "Rendering"), plus its gradients, culling, batching and ``info``."""

import math

import numpy as np
import pytest
import torch

from backend.cameras import c2w_blender_to_viewmat, look_at_c2w
from backend.gaussians.ply import SH_C0
from backend.gaussians.gaussians import rgb_to_sh0, sh0_to_rgb
from backend.render.rasterize import rasterize
from backend.render.numba_rasterizer import rasterize_numba
from backend.render.torch_rasterizer import project_gaussians, rasterize_torch

IMPLEMENTATIONS = {"torch": rasterize_torch, "numba": rasterize_numba}


@pytest.fixture(autouse=True, params=sorted(IMPLEMENTATIONS))
def implementation(request, monkeypatch):
    """Every test below runs once per CPU rasterizer (``render_impl`` is swapped)."""
    monkeypatch.setitem(globals(), "render_impl", IMPLEMENTATIONS[request.param])
    return request.param


render_impl = rasterize_torch

W, H = 16, 12
FOCAL = 20.0


# ----------------------------------------------------------------------------- reference


def _qmul(a, b):
    """Hamilton product of wxyz quaternions."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _rotmat(q):
    """Rotation matrix whose columns are the basis vectors rotated by q v q* (independent of
    the closed-form matrix the module uses)."""
    q = np.asarray(q, np.float64) / np.linalg.norm(q)
    qc = q * np.array([1, -1, -1, -1])
    cols = [_qmul(_qmul(q, np.concatenate([[0.0], e])), qc)[1:] for e in np.eye(3)]
    return np.stack(cols, axis=1)


def ref_project(mean, quat, scale, viewmat, K, width, height, eps2d=0.3, near=0.01, clamp=True):
    """One Gaussian through one camera: (mean2d, conic (a,b,c), depth) or None if culled."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    p = R @ mean + t
    if p[2] <= near:
        return None
    rot = _rotmat(quat)
    cov_w = rot @ np.diag(np.asarray(scale) ** 2) @ rot.T
    cov_c = R @ cov_w @ R.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    x, y, z = p
    # gsplat persp_proj: clamp x/z, y/z to the screen plus 30% of the half FOV tangent.
    xc = z * min(max(x / z, -(cx / fx + 0.3 * tan_x)), (width - cx) / fx + 0.3 * tan_x) if clamp else x
    yc = z * min(max(y / z, -(cy / fy + 0.3 * tan_y)), (height - cy) / fy + 0.3 * tan_y) if clamp else y
    J = np.array([[fx / z, 0.0, -fx * xc / z ** 2], [0.0, fy / z, -fy * yc / z ** 2]])
    cov2 = J @ cov_c @ J.T + eps2d * np.eye(2)
    if np.linalg.det(cov2) <= 0:
        return None
    inv = np.linalg.inv(cov2)
    return np.array([fx * x / z + cx, fy * y / z + cy]), (inv[0, 0], inv[0, 1], inv[1, 1]), z


def ref_render(means, quats, scales, opacities, colors, viewmat, K, width, height, bg=None):
    """Per-pixel front-to-back loop over depth-sorted Gaussians. Returns (rgb [H,W,D], alpha [H,W])."""
    proj = []
    for i in range(len(means)):
        r = ref_project(means[i], quats[i], scales[i], viewmat, K, width, height)
        if r is not None:
            proj.append((r[2], i, r[0], r[1]))
    proj.sort(key=lambda e: e[0])
    D = colors.shape[1]
    out = np.zeros((height, width, D))
    alpha_out = np.zeros((height, width))
    for py in range(height):
        for px in range(width):
            T = 1.0
            acc = np.zeros(D)
            for _, i, m2, (a, b, c) in proj:
                dx = m2[0] - (px + 0.5)
                dy = m2[1] - (py + 0.5)
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                if sigma < 0:
                    continue
                alpha = min(0.999, opacities[i] * math.exp(-sigma))
                if alpha < 1.0 / 255.0:
                    continue
                next_T = T * (1.0 - alpha)
                if next_T <= 1e-4:
                    break
                acc += colors[i] * alpha * T
                T = next_T
            out[py, px] = acc + (T * bg if bg is not None else 0.0)
            alpha_out[py, px] = 1.0 - T
    return out, alpha_out


# ----------------------------------------------------------------------------- scenes


def camera(eye, target=(0.0, 0.0, 0.0)):
    return c2w_blender_to_viewmat(look_at_c2w(np.array(eye, float), np.array(target, float)))


def K_matrix(f=FOCAL, width=W, height=H):
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def make_scene(n=20, seed=0, dtype=torch.float32):
    """Random Gaussians around the origin, two of them near the screen edge so the
    projection clamp matters, seen by two cameras 3 m away."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.6
    # Camera 0 is on -Y looking at +Y; camera x = world x, camera y = -world z. Gaussians
    # (distinct depths: ties have no defined order) 0..3 are past the clamp limits (x/z ~ ±0.62 > 0.52, y/z ~ ±0.55 > 0.39) on all four sides.
    means[0] = torch.tensor([1.85, 0.05, 0.1])
    means[1] = torch.tensor([-0.3, -0.1, -1.75])
    means[2] = torch.tensor([-1.85, 0.15, -0.1])
    means[3] = torch.tensor([0.3, -0.2, 1.5])
    quats = torch.randn(n, 4, generator=g)
    scales = 0.06 + 0.2 * torch.rand(n, 3, generator=g)
    scales[0] = torch.tensor([0.35, 0.3, 0.25])
    scales[1] = torch.tensor([0.25, 0.3, 0.35])
    scales[2] = torch.tensor([0.3, 0.25, 0.35])
    scales[3] = torch.tensor([0.35, 0.25, 0.3])
    opacities = 0.25 + 0.7 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    viewmats = torch.stack([camera((0.0, -3.0, 0.0)), camera((2.2, 1.5, 1.2))])
    Ks = torch.stack([K_matrix(), K_matrix(f=18.0)])
    return [x.to(dtype) for x in (means, quats, scales, opacities, colors, viewmats, Ks)]


def batched(means, quats, scales, opacities, colors, B):
    return (means.expand(B, *means.shape), quats.expand(B, *quats.shape), scales.expand(B, *scales.shape),
            opacities.expand(B, *opacities.shape), colors.expand(B, *colors.shape))


def render_scene(scene, bg=None):
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    B = viewmats.shape[0]
    return render_impl(*batched(means, quats, scales, opacities, colors, B), viewmats, Ks, W, H,
                           backgrounds=bg)


def reference_scene(scene, b, bg=None):
    means, quats, scales, opacities, colors, viewmats, Ks = [x.double().numpy() for x in scene]
    return ref_render(means, quats, scales, opacities, colors, viewmats[b], Ks[b], W, H,
                      None if bg is None else bg.double().numpy())


# ----------------------------------------------------------------------------- tests


def test_reference_scene_is_not_trivial():
    """Guard for the comparison below: both images have many covered pixels, some overlap,
    and the edge Gaussians are visible while being past the projection clamp."""
    scene = make_scene()
    for b in range(2):
        _, alpha = reference_scene(scene, b)
        assert (alpha > 0.05).sum() > 60
        assert alpha.max() > 0.8
    means, _, _, _, _, viewmats, Ks = scene
    p = (viewmats[0, :3, :3] @ means[0]) + viewmats[0, :3, 3]
    assert p[0] / p[2] > 1.3 * 0.5 * W / FOCAL  # past the clamp limit
    _, alpha0 = ref_render(*[x.double().numpy() for x in (means[:1], scene[1][:1], scene[2][:1],
                                                           scene[3][:1], scene[4][:1])],
                           viewmats[0].double().numpy(), Ks[0].double().numpy(), W, H)
    assert alpha0.max() > 0.02  # the clamped Gaussian's tail reaches the image


def test_forward_matches_reference_loop():
    scene = make_scene()
    bg = torch.tensor([[0.2, 0.4, 0.9], [1.0, 1.0, 1.0]])
    colors, alphas, _ = render_scene(scene, bg)
    assert colors.shape == (2, H, W, 3) and alphas.shape == (2, H, W, 1)
    for b in range(2):
        ref_c, ref_a = reference_scene(scene, b, bg[b])
        np.testing.assert_allclose(colors[b].numpy(), ref_c, atol=1e-5, rtol=0)
        np.testing.assert_allclose(alphas[b, ..., 0].numpy(), ref_a, atol=1e-5, rtol=0)


def test_forward_matches_reference_other_seeds_no_background():
    for seed in (1, 2):
        scene = make_scene(n=20, seed=seed)
        colors, alphas, _ = render_scene(scene)
        for b in range(2):
            ref_c, ref_a = reference_scene(scene, b)
            np.testing.assert_allclose(colors[b].numpy(), ref_c, atol=1e-5, rtol=0)
            np.testing.assert_allclose(alphas[b, ..., 0].numpy(), ref_a, atol=1e-5, rtol=0)


def _stack(opacities, colors):
    """Three large Gaussians on the optical axis at increasing depth, camera 0."""
    n = len(opacities)
    means = torch.tensor([[0.0, -1.0 + 0.3 * i, 0.0] for i in range(n)])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * n)
    scales = torch.full((n, 3), 0.4)
    op = torch.tensor(opacities)
    col = torch.tensor(colors)
    vm = camera((0.0, -3.0, 0.0))[None]
    K = K_matrix()[None]
    K[0, 0, 2] += 0.5  # the means project exactly onto the centre of pixel (W/2, H/2)
    K[0, 1, 2] += 0.5
    return render_impl(means[None], quats[None], scales[None], op[None], col[None], vm, K, W, H,
                           backgrounds=torch.tensor([[0.0, 0.0, 1.0]]))


def test_pixel_stops_before_transmittance_reaches_1e4():
    """α1 = 0.999 then α2 = 0.999: T would become 1e-6 <= 1e-4, so the second Gaussian (and
    everything behind it) is excluded; colour = 0.999·c1 + 0.001·bg at the centre."""
    colors, alphas, _ = _stack([1.0, 1.0, 1.0], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    centre = colors[0, H // 2, W // 2]
    np.testing.assert_allclose(centre.numpy(), [0.999, 0.0, 0.001], atol=1e-6)
    assert alphas[0, H // 2, W // 2, 0].item() == pytest.approx(0.999, abs=1e-6)


def test_pixel_stop_uses_the_1e4_threshold_exactly():
    # T: 1 -> 0.001 -> 0.001·0.05 = 5e-5 <= 1e-4: the second Gaussian is excluded.
    colors, _, _ = _stack([1.0, 0.95], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(colors[0, H // 2, W // 2].numpy(), [0.999, 0.0, 0.001], atol=1e-7)
    # T: 1 -> 0.001 -> 0.001·0.15 = 1.5e-4 > 1e-4: included; the third (T -> 1.5e-7) is not.
    colors, alphas, _ = _stack([1.0, 0.85, 1.0], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(colors[0, H // 2, W // 2].numpy(), [0.999, 0.00085, 0.00015], atol=1e-7)
    assert alphas[0, H // 2, W // 2, 0].item() == pytest.approx(1 - 0.00015, abs=1e-7)


def test_second_gaussian_included_when_transmittance_stays_above_threshold():
    colors, alphas, _ = _stack([0.5, 0.5], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    c = colors[0, H // 2, W // 2].numpy()
    a = alphas[0, H // 2, W // 2, 0].item()
    # σ = 0 at this pixel: α = 0.5 each; T = 1, 0.5, 0.25.
    np.testing.assert_allclose(c, [0.5, 0.25, 0.25], atol=1e-6)
    assert a == pytest.approx(0.75, abs=1e-6)


def test_alpha_is_one_minus_final_transmittance_and_background_composites():
    scene = make_scene()
    bg = torch.tensor([[0.3, 0.6, 0.1], [0.7, 0.2, 0.5]])
    c_bg, a_bg, _ = render_scene(scene, bg)
    c0, a0, _ = render_scene(scene, None)
    torch.testing.assert_close(a_bg, a0)
    torch.testing.assert_close(c_bg, c0 + (1 - a0) * bg[:, None, None, :], atol=1e-6, rtol=0)
    for b in range(2):
        _, ref_a = reference_scene(scene, b)
        np.testing.assert_allclose(a0[b, ..., 0].numpy(), ref_a, atol=1e-5)
    # Somewhere nothing is drawn: exactly the background there.
    empty = a0[..., 0] == 0
    assert empty.any()
    assert torch.equal(c_bg[empty], bg[:, None, None, :].expand(2, H, W, 3)[empty])


def test_background_only_when_nothing_visible():
    means = torch.tensor([[[0.0, 50.0, 30.0]]])  # far off to the side
    out_c, out_a, info = render_impl(
        means, torch.tensor([[[1.0, 0, 0, 0]]]), torch.full((1, 1, 3), 0.1), torch.tensor([[0.9]]),
        torch.tensor([[[1.0, 0.0, 0.0]]]), camera((0.0, -3.0, 0.0))[None], K_matrix()[None], W, H,
        backgrounds=torch.tensor([[0.25, 0.5, 0.75]]))
    assert torch.equal(out_a, torch.zeros(1, H, W, 1))
    assert torch.allclose(out_c, torch.tensor([0.25, 0.5, 0.75]).expand(1, H, W, 3))
    assert info["radii"].abs().sum() == 0


def test_gaussian_behind_camera_is_not_drawn():
    vm = camera((0.0, -3.0, 0.0))[None]
    # Camera at y=-3 looking towards +y; y = -5 is 2 m behind it, on the optical axis.
    means = torch.tensor([[[0.0, -5.0, 0.0], [0.0, 0.0, 0.0]]])
    quats = torch.tensor([[[1.0, 0, 0, 0]] * 2])
    scales = torch.full((1, 2, 3), 0.5)
    op = torch.tensor([[0.9, 0.9]])
    col = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    c, a, info = render_impl(means[:, :1], quats[:, :1], scales[:, :1], op[:, :1], col[:, :1], vm,
                                 K_matrix()[None], W, H)
    assert torch.equal(a, torch.zeros_like(a)) and torch.equal(c, torch.zeros_like(c))
    assert torch.equal(info["radii"][0, 0], torch.zeros(2, dtype=info["radii"].dtype))
    # With a visible Gaussian in front, the one behind changes nothing.
    c2, a2, info2 = render_impl(means, quats, scales, op, col, vm, K_matrix()[None], W, H)
    c3, a3, _ = render_impl(means[:, 1:], quats[:, 1:], scales[:, 1:], op[:, 1:], col[:, 1:], vm,
                                K_matrix()[None], W, H)
    torch.testing.assert_close(c2, c3)
    assert c2[0, ..., 0].abs().max() == 0  # no red anywhere
    assert (info2["radii"][0, 0] == 0).all() and (info2["radii"][0, 1] > 0).all()


def test_batch_equals_rendering_each_alone():
    scene = make_scene()
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    # Different Gaussians per image too (a time batch), not just different cameras.
    means_b = torch.stack([means, means + torch.tensor([0.05, -0.02, 0.03])])
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])
    q, s, o, c = (x.expand(2, *x.shape) for x in (quats, scales, opacities, colors))
    cb, ab, info = render_impl(means_b, q, s, o, c, viewmats, Ks, W, H, backgrounds=bg)
    for b in range(2):
        c1, a1, info1 = render_impl(means_b[b:b + 1], q[:1], s[:1], o[:1], c[:1], viewmats[b:b + 1],
                                        Ks[b:b + 1], W, H, backgrounds=bg[b:b + 1])
        torch.testing.assert_close(cb[b], c1[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(ab[b], a1[0], atol=1e-6, rtol=0)
        assert torch.equal(info["radii"][b], info1["radii"][0])
    assert not torch.allclose(cb[0], cb[1])


def test_info_shapes_and_means2d_gradient():
    scene = make_scene()
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    m = means.clone().requires_grad_(True)
    B, N = 2, len(means)
    out_c, out_a, info = render_impl(m.expand(B, N, 3), *batched(means, quats, scales, opacities, colors, B)[1:],
                                         viewmats, Ks, W, H)
    assert info["means2d"].shape == (B, N, 2)
    assert info["radii"].shape == (B, N, 2)
    assert info["width"] == W and info["height"] == H and info["n_cameras"] == B
    info["means2d"].retain_grad()
    (out_c.sum() + out_a.sum()).backward()
    g = info["means2d"].grad
    assert g is not None and g.shape == (B, N, 2)
    visible = (info["radii"] > 0).all(-1)
    assert visible.sum() >= N  # most are visible in both cameras
    assert (g[~visible] == 0).all()
    assert (g[visible].norm(dim=-1) > 0).float().mean() > 0.9
    assert m.grad is not None and m.grad.abs().sum() > 0
    # means2d is the pinhole projection of the means.
    p = torch.einsum("bij,nj->bni", viewmats[:, :3, :3], means) + viewmats[:, None, :3, 3]
    u = Ks[:, None, 0, 0] * p[..., 0] / p[..., 2] + Ks[:, None, 0, 2]
    v = Ks[:, None, 1, 1] * p[..., 1] / p[..., 2] + Ks[:, None, 1, 2]
    torch.testing.assert_close(info["means2d"].detach(), torch.stack([u, v], -1), atol=1e-4, rtol=1e-5)


def test_project_matches_reference_conics_including_clamped():
    scene = make_scene()
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    B, N = 2, len(means)
    means2d, conics, depths, radii, _ = project_gaussians(
        means.expand(B, N, 3), quats.expand(B, N, 4), scales.expand(B, N, 3), opacities.expand(B, N),
        viewmats, Ks, W, H)
    for b in range(B):
        for i in range(N):
            r = ref_project(means[i].double().numpy(), quats[i].double().numpy(), scales[i].double().numpy(),
                            viewmats[b].double().numpy(), Ks[b].double().numpy(), W, H)
            np.testing.assert_allclose(means2d[b, i].numpy(), r[0], rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(conics[b, i].numpy(), np.array(r[1]), rtol=1e-4, atol=1e-6)
            assert depths[b, i].item() == pytest.approx(r[2], rel=1e-5)
    # The comparison above covers the clamp: unclamped, Gaussians 0..3 in camera 0
    # would have clearly different conics.
    for i in (0, 1, 2, 3):
        r = ref_project(means[i].double().numpy(), quats[i].double().numpy(), scales[i].double().numpy(),
                        viewmats[0].double().numpy(), Ks[0].double().numpy(), W, H, clamp=False)
        diff = np.abs(np.array(r[1]) - conics[0, i].double().numpy()).max()
        assert diff > 1e-3 * np.abs(np.array(r[1])).max()


def _loss_fn(scene, weights, bg):
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    B = viewmats.shape[0]
    wc, wa = weights

    def f(m, s, o, c):
        out_c, out_a, _ = render_impl(m.expand(B, *m.shape), quats.expand(B, *quats.shape),
                                          s.expand(B, *s.shape), o.expand(B, *o.shape),
                                          c.expand(B, *c.shape), viewmats, Ks, W, H, backgrounds=bg)
        return (out_c * wc).sum() + (out_a * wa).sum()
    return f


def _grad_scene():
    """A sparser float64 scene: opacities well below the 0.999 clamp and few overlaps, so
    no pixel is near the transmittance cut."""
    scene = make_scene(n=8, seed=3, dtype=torch.float64)
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    opacities = 0.3 + 0.4 * torch.rand(8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return [means, quats, scales, opacities, colors, viewmats, Ks]


def test_gradients_float64_gradcheck():
    scene = _grad_scene()
    g = torch.Generator().manual_seed(11)
    weights = (torch.rand(2, H, W, 3, generator=g, dtype=torch.float64),
               torch.rand(2, H, W, 1, generator=g, dtype=torch.float64))
    bg = torch.tensor([[0.2, 0.5, 0.7], [0.6, 0.1, 0.3]], dtype=torch.float64)
    f = _loss_fn(scene, weights, bg)
    means, _, scales, opacities, colors = scene[:5]
    inputs = tuple(x.clone().requires_grad_(True) for x in (means, scales, opacities, colors))
    # Sanity: all four gradients are non-trivial.
    f(*inputs).backward()
    for x in inputs:
        assert x.grad.abs().max() > 1e-3
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradients_float32_match_float64():
    """The training dtype is float32: its gradients agree with float64's."""
    scene64 = _grad_scene()
    scene32 = [x.float() for x in scene64]
    g = torch.Generator().manual_seed(11)
    w64 = (torch.rand(2, H, W, 3, generator=g, dtype=torch.float64),
           torch.rand(2, H, W, 1, generator=g, dtype=torch.float64))
    grads = []
    for scene, w in ((scene64, w64), (scene32, tuple(x.float() for x in w64))):
        f = _loss_fn(scene, w, None)
        inputs = tuple(x.clone().requires_grad_(True) for x in (scene[0], scene[2], scene[3], scene[4]))
        f(*inputs).backward()
        grads.append([x.grad.double() for x in inputs])
    for g64, g32 in zip(*grads):
        torch.testing.assert_close(g32, g64, atol=2e-4 * g64.abs().max().item(), rtol=1e-3)


def test_dispatch_cpu_uses_the_compiled_rasterizer_and_validates_batch():
    scene = make_scene()
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    args = (*batched(means, quats, scales, opacities, colors, 2), viewmats, Ks, W, H)
    c1, a1, _ = rasterize(*args)
    c2, a2, _ = rasterize_numba(*args)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    with pytest.raises(ValueError):
        rasterize(*batched(means, quats, scales, opacities, colors, 2), viewmats[:1], Ks[:1], W, H)
    with pytest.raises(ValueError):
        rasterize(*batched(means, quats, scales, opacities, colors, 2), viewmats, Ks[:1], W, H)


def test_numba_matches_torch_forward_and_gradients_on_a_dense_scene(implementation):
    """A crowded 3-camera scene (400 Gaussians, many pixels cut at T = 1e-4, clamped
    alphas, Gaussians behind the camera): the compiled compositor's images and every
    gradient match the autograd-through-torch rasterizer."""
    if implementation != "numba":
        pytest.skip("one comparison is enough")
    g = torch.Generator().manual_seed(5)
    B, N, w, h = 3, 400, 41, 29
    base = [0.5 * torch.randn(N, 3, generator=g), torch.randn(N, 4, generator=g),
            0.02 + 0.15 * torch.rand(N, 3, generator=g), 0.05 + 0.95 * torch.rand(N, generator=g),
            torch.rand(N, 3, generator=g)]
    base[3][:40] = 1.0  # alpha clamped at 0.999
    base[0][40:50] = torch.tensor([0.0, -4.0, 0.0])  # behind camera 0
    viewmats = torch.stack([camera((0.0, -3.0, 0.0)), camera((2.2, 1.5, 1.2)), camera((-1.0, 2.5, -1.5))])
    Ks = torch.stack([K_matrix(width=w, height=h), K_matrix(f=30.0, width=w, height=h),
                      K_matrix(f=15.0, width=w, height=h)])
    bg = torch.rand(B, 3, generator=g)
    wc, wa = torch.rand(B, h, w, 3, generator=g), torch.rand(B, h, w, 1, generator=g)
    results = []
    for fn in (rasterize_torch, rasterize_numba):
        leaves = [x.clone().requires_grad_(True) for x in base]
        c, a, info = fn(*batched(*leaves, B), viewmats, Ks, w, h, backgrounds=bg)
        info["means2d"].retain_grad()
        ((c * wc).sum() + (a * wa).sum()).backward()
        results.append((c.detach(), a.detach(), [x.grad for x in leaves], info["means2d"].grad))
    (c0, a0, g0, m0), (c1, a1, g1, m1) = results
    assert (a0 > 0.99).float().mean() > 0.05  # dense enough for the transmittance cut
    torch.testing.assert_close(c1, c0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a1, a0, atol=1e-5, rtol=1e-4)
    for x1, x0 in zip(g1 + [m1], g0 + [m0]):
        assert x0.abs().max() > 0
        torch.testing.assert_close(x1, x0, atol=1e-5 * x0.abs().max().item(), rtol=1e-3)


def test_sh0_rgb_conversion():
    rgb = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.75, 0.1]])
    sh = rgb_to_sh0(rgb)
    np.testing.assert_allclose(sh[0].numpy(), [-0.5 / SH_C0, 0.0, 0.5 / SH_C0], rtol=1e-6)
    torch.testing.assert_close(sh0_to_rgb(sh), rgb)
    assert SH_C0 == pytest.approx(0.28209479177387814)
    # Negative colours are clamped to 0, values above 1 are not clamped (gsplat semantics).
    out = sh0_to_rgb(torch.tensor([-10.0, 0.0, 10.0]))
    np.testing.assert_allclose(out.numpy(), [0.0, 0.5, 0.5 + 10 * SH_C0], rtol=1e-6)
