"""Camera convention conversions (docs/design.md "Conventions"): Blender/OpenGL c2w in files,
OpenCV w2c (+Z forward, +Y down) for the rasterizer."""

import math

import numpy as np
import pytest
import torch

from backend.cameras import (c2w_blender_to_viewmat, intrinsics_from_fov, intrinsics_from_frame, look_at_c2w,
                             viewmat_to_c2w_blender)


def apply(viewmat, point):
    return (viewmat[:3, :3] @ torch.tensor(point, dtype=torch.float32)) + viewmat[:3, 3]


def test_look_at_is_blender_convention():
    c2w = look_at_c2w(np.array([0.0, -3.0, 0.0]), np.array([0.0, 0.0, 0.0]))
    # Camera -Z points at the target (+Y world), camera +Y is world +Z, camera +X world +X.
    np.testing.assert_allclose(-c2w[:3, 2], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 1], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 3], [0, -3, 0])
    np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        look_at_c2w([0.0, 0.0, 2.0])  # straight down along the up vector


def test_viewmat_is_opencv_plus_z_forward_plus_y_down():
    vm = c2w_blender_to_viewmat(look_at_c2w(np.array([0.0, -3.0, 0.0]), np.zeros(3)))
    assert vm.dtype == torch.float32 and vm.shape == (4, 4)
    torch.testing.assert_close(apply(vm, [0, 0, 0]), torch.tensor([0.0, 0.0, 3.0]), atol=1e-6, rtol=0)
    above = apply(vm, [0, 0, 1])       # world +Z (up) -> image up -> negative camera y
    torch.testing.assert_close(above, torch.tensor([0.0, -1.0, 3.0]), atol=1e-6, rtol=0)
    right = apply(vm, [1, 0, 0])       # world +X is to the camera's right -> +x
    torch.testing.assert_close(right, torch.tensor([1.0, 0.0, 3.0]), atol=1e-6, rtol=0)
    nearer = apply(vm, [0, -1, 0])     # towards the camera: smaller depth
    assert nearer[2].item() == pytest.approx(2.0, abs=1e-6)
    torch.testing.assert_close(vm[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_viewmat_of_oblique_camera_maps_target_to_optical_axis():
    eye = np.array([2.0, 1.5, 1.2])
    target = np.array([0.3, -0.2, 0.1])
    vm = c2w_blender_to_viewmat(look_at_c2w(eye, target))
    p = apply(vm, target.tolist())
    assert abs(p[0].item()) < 1e-5 and abs(p[1].item()) < 1e-5
    assert p[2].item() == pytest.approx(np.linalg.norm(eye - target), rel=1e-6)
    # The camera centre maps to the camera-space origin.
    torch.testing.assert_close(apply(vm, eye.tolist()), torch.zeros(3), atol=1e-5, rtol=0)


def test_round_trip_and_batch():
    rng = np.random.default_rng(0)
    c2ws = np.stack([look_at_c2w(rng.normal(size=3) * 3, rng.normal(size=3) * 0.2) for _ in range(5)])
    vms = c2w_blender_to_viewmat(c2ws)
    assert vms.shape == (5, 4, 4)
    back = viewmat_to_c2w_blender(vms)
    np.testing.assert_allclose(back.numpy(), c2ws, atol=1e-5)
    # Batch equals one at a time, and tensors are accepted as input too.
    for i in range(5):
        torch.testing.assert_close(c2w_blender_to_viewmat(torch.from_numpy(c2ws[i])), vms[i])
    # viewmat @ c2w_cv is the identity.
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    np.testing.assert_allclose(vms[2].double().numpy() @ c2ws[2] @ flip, np.eye(4), atol=1e-5)


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(math.pi / 2, 64, 48)
    assert K.dtype == torch.float32 and K.shape == (3, 3)
    torch.testing.assert_close(K, torch.tensor([[32.0, 0.0, 32.0], [0.0, 32.0, 24.0], [0.0, 0.0, 1.0]]))
    K40 = intrinsics_from_fov(math.radians(40.0), 100, 100)
    assert K40[0, 0].item() == pytest.approx(50.0 / math.tan(math.radians(20.0)), rel=1e-6)
    # The edge of the image is at the half field of view.
    assert (K40[0, 2] / K40[0, 0]).item() == pytest.approx(math.tan(math.radians(20.0)), rel=1e-6)


def test_intrinsics_from_frame_nerfstudio_keys():
    frame = {"fl_x": 100.0, "fl_y": 110.0, "cx": 30.0, "cy": 20.0, "w": 64, "h": 40}
    K = intrinsics_from_frame(frame, None, 64, 40)
    torch.testing.assert_close(K, torch.tensor([[100.0, 0.0, 30.0], [0.0, 110.0, 20.0], [0.0, 0.0, 1.0]]))
    # Images stored at half the size of w/h: every entry scales with it.
    K2 = intrinsics_from_frame(frame, None, 32, 20)
    torch.testing.assert_close(K2, torch.tensor([[50.0, 0.0, 15.0], [0.0, 55.0, 10.0], [0.0, 0.0, 1.0]]))
    # cx/cy default to the centre of the w/h image, then scale with it.
    K4 = intrinsics_from_frame({"fl_x": 100.0, "w": 64, "h": 40}, None, 32, 20)
    torch.testing.assert_close(K4, torch.tensor([[50.0, 0.0, 16.0], [0.0, 50.0, 10.0], [0.0, 0.0, 1.0]]))
    # fl_y defaults to fl_x, cx/cy to the image centre; per-frame keys beat camera_angle_x.
    K3 = intrinsics_from_frame({"fl_x": 80.0}, math.pi / 2, 64, 48)
    torch.testing.assert_close(K3, torch.tensor([[80.0, 0.0, 32.0], [0.0, 80.0, 24.0], [0.0, 0.0, 1.0]]))
    # Without fl_x the field of view is used.
    torch.testing.assert_close(intrinsics_from_frame({}, math.pi / 2, 64, 48), intrinsics_from_fov(math.pi / 2, 64, 48))
    with pytest.raises(ValueError, match="camera_angle_x"):
        intrinsics_from_frame({}, None, 64, 48)


def test_projection_through_K_and_viewmat_lands_where_the_helper_draws():
    """End to end: the footage helper draws a ball at the projection it computes in
    OpenGL terms; our viewmat + K put it in the same pixel."""
    c2w = look_at_c2w(np.array([2.0, -2.0, 1.0]), np.zeros(3))
    vm = c2w_blender_to_viewmat(c2w)
    K = intrinsics_from_fov(math.radians(40.0), 32, 32)
    point = np.array([0.2, 0.1, 0.3])
    pc = apply(vm, point.tolist())
    u = (K[0, 0] * pc[0] / pc[2] + K[0, 2]).item()
    v = (K[1, 1] * pc[1] / pc[2] + K[1, 2]).item()
    # OpenGL-side computation as in tests/helpers/footage.py::_render_ball.
    w2c = np.linalg.inv(c2w)
    pg = w2c[:3, :3] @ point + w2c[:3, 3]
    focal = 0.5 * 32 / math.tan(math.radians(20.0))
    assert u == pytest.approx(16 + focal * pg[0] / -pg[2], abs=1e-4)
    assert v == pytest.approx(16 - focal * pg[1] / -pg[2], abs=1e-4)
