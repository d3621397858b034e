"""The one place where camera conventions are converted.

Files carry camera-to-world (c2w) 4x4 matrices in the Blender/OpenGL convention: the
camera looks down -Z with +Y up, world Z up, metres (NeRF-synthetic / D-NeRF
``transforms_*.json``). The rasterizers take world-to-camera ``viewmats`` in the OpenCV
convention (+Z forward, +Y down, +X right) and pinhole intrinsics ``Ks``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Flips the camera's Y and Z axes: OpenGL camera frame <-> OpenCV camera frame.
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def c2w_blender_to_viewmat(c2w: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convert Blender/OpenGL camera-to-world matrices to OpenCV world-to-camera viewmats.

    Args:
        c2w: ``[..., 4, 4]`` camera-to-world, camera looking down -Z, +Y up.

    Returns:
        ``[..., 4, 4]`` float32 tensor ``w2c`` such that ``x_cam = w2c @ x_world`` with the
        camera looking down +Z, +Y down (OpenCV), as gsplat's ``viewmats`` expect.
    """
    c2w_t = torch.as_tensor(np.asarray(c2w, dtype=np.float64) if not torch.is_tensor(c2w) else c2w,
                            dtype=torch.float64)
    flip = torch.as_tensor(_GL_TO_CV, dtype=torch.float64)
    c2w_cv = c2w_t @ flip
    return torch.linalg.inv(c2w_cv).to(torch.float32)


def viewmat_to_c2w_blender(viewmat: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`c2w_blender_to_viewmat`: ``[...,4,4]`` OpenCV w2c -> Blender c2w (float32)."""
    flip = torch.as_tensor(_GL_TO_CV, dtype=torch.float64)
    return (torch.linalg.inv(viewmat.to(torch.float64)) @ flip).to(torch.float32)


def intrinsics_from_fov(camera_angle_x: float, width: int, height: int) -> torch.Tensor:
    """Pinhole intrinsics from the horizontal field of view (NeRF ``camera_angle_x``).

    Args:
        camera_angle_x: horizontal FOV in radians.
        width, height: image size in pixels.

    Returns:
        ``[3, 3]`` float32 ``K`` with ``fx = fy = 0.5 * width / tan(fov/2)`` and the
        principal point at the image centre ``(width/2, height/2)`` (pixel centres at +0.5).
    """
    focal = 0.5 * width / math.tan(0.5 * camera_angle_x)
    return torch.tensor([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]],
                        dtype=torch.float32)


def intrinsics_from_frame(frame: dict, camera_angle_x: float | None, width: int, height: int) -> torch.Tensor:
    """Intrinsics for one transforms frame: nerfstudio keys ``fl_x fl_y cx cy`` if present,
    else from ``camera_angle_x``.

    Raises:
        ValueError: when neither per-frame intrinsics nor ``camera_angle_x`` is given.
    """
    if "fl_x" in frame:
        fx = float(frame["fl_x"])
        fy = float(frame.get("fl_y", fx))
        sx = width / float(frame.get("w", width))
        sy = height / float(frame.get("h", height))
        cx = float(frame.get("cx", frame.get("w", width) / 2.0))
        cy = float(frame.get("cy", frame.get("h", height) / 2.0))
        return torch.tensor([[fx * sx, 0.0, cx * sx], [0.0, fy * sy, cy * sy], [0.0, 0.0, 1.0]],
                            dtype=torch.float32)
    if camera_angle_x is None:
        raise ValueError("frame has no fl_x/fl_y and the file has no camera_angle_x")
    return intrinsics_from_fov(camera_angle_x, width, height)


def look_at_c2w(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Blender-convention camera-to-world for a camera at ``eye`` looking at ``target``.

    Args:
        eye: camera centre ``[3]`` in world coordinates (metres).
        target: point the camera looks at (default: the world origin).
        up: world up direction (default +Z).

    Returns:
        ``[4, 4]`` float64 c2w whose columns are the camera's x, y, z axes and centre: the
        camera's -Z points at the target and +Y is as close to ``up`` as possible.

    Raises:
        ValueError: if ``eye`` equals ``target`` or the view direction is parallel to ``up``.
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise ValueError("camera eye coincides with its target")
    forward /= norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("view direction is parallel to the up vector")
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0] = right
    c2w[:3, 1] = cam_up
    c2w[:3, 2] = -forward
    c2w[:3, 3] = eye
    return c2w
