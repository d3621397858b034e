#!/usr/bin/env python
"""Record gsplat's CUDA rasterization of fixed inputs as a parity fixture for the CPU rasterizers.

Needs a CUDA device and gsplat 1.5.3 (which JIT-builds its extension on first use). Writes
``tests/fixtures/gsplat_parity.npz`` (or ``--out``), which ``tests/backend/test_gsplat_parity.py``
replays on the CPU through :func:`backend.render.numba_rasterizer.rasterize_numba` and
:func:`backend.render.torch_rasterizer.rasterize_torch`.

Each case stores its inputs (float32, so the test does not depend on an RNG), gsplat's
outputs, and the gradients of ``Σ colors·v_colors + Σ alphas·v_alphas`` for fixed random
upstream gradients ``v_colors [B,H,W,3]`` and ``v_alphas [B,H,W,1]``. Keys are
``<case>/<name>``; inputs follow :func:`backend.render.rasterize.rasterize` (``means
[B,N,3]`` m, ``quats [B,N,4]`` wxyz, ``scales [B,N,3]`` linear σ, ``opacities [B,N]``
activated, ``colors [B,N,3]``, ``viewmats [B,4,4]`` OpenCV w2c, ``Ks [B,3,3]`` px).

Cases:

- ``scene``: 600 Gaussians in a 1 m ball seen by 3 cameras 3 m away (some partly off
  screen), white background;
- ``edge``: 200 Gaussians that straddle the near plane, sit behind the cameras, are
  needle-thin or larger than the image, with opacities near 0 and near 1, black
  background.

Usage (on a CUDA machine): ``python scripts/make_gsplat_fixture.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.cameras import c2w_blender_to_viewmat, intrinsics_from_fov, look_at_c2w  # noqa: E402

WIDTH, HEIGHT = 80, 60


def _cameras(eyes: list[tuple[float, float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(viewmats [B,4,4], Ks [B,3,3])`` for cameras at ``eyes`` looking at the origin (50° FOV)."""
    viewmats = torch.stack([c2w_blender_to_viewmat(look_at_c2w(e)) for e in eyes]).float()
    K = intrinsics_from_fov(math.radians(50.0), WIDTH, HEIGHT).float()
    return viewmats, K.expand(len(eyes), 3, 3).clone()


def _random_quats(g: torch.Generator, n: int) -> torch.Tensor:
    q = torch.randn(n, 4, generator=g)
    return q / q.norm(dim=-1, keepdim=True)


def make_scene_case(g: torch.Generator) -> dict[str, torch.Tensor]:
    """600 ordinary Gaussians in a ball, 3 cameras, white background."""
    n = 600
    eyes = [(3.0, 0.0, 0.5), (0.0, -3.0, 1.0), (-2.2, 2.2, -0.6)]
    viewmats, Ks = _cameras(eyes)
    B = len(eyes)
    means = torch.randn(n, 3, generator=g) * 0.45
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.5 - 3.2)
    return dict(
        means=means.expand(B, n, 3).clone(),
        quats=_random_quats(g, n).expand(B, n, 4).clone(),
        scales=scales.expand(B, n, 3).clone(),
        opacities=torch.sigmoid(torch.randn(n, generator=g) * 1.5).expand(B, n).clone(),
        colors=torch.rand(n, 3, generator=g).expand(B, n, 3).clone(),
        viewmats=viewmats, Ks=Ks, backgrounds=torch.ones(B, 3))


def make_edge_case(g: torch.Generator) -> dict[str, torch.Tensor]:
    """200 awkward Gaussians per camera (different sets per camera), black background."""
    n = 200
    eyes = [(2.0, 0.0, 0.0), (0.0, 2.0, 0.3)]
    viewmats, Ks = _cameras(eyes)
    B = len(eyes)
    groups = []
    for b in range(B):
        c2w = torch.linalg.inv(viewmats[b].double()).float()
        centre, forward = c2w[:3, 3], c2w[:3, 2]  # OpenCV camera looks down +Z
        depth = torch.cat([torch.rand(50, generator=g) * 0.2,           # around the near plane
                           -torch.rand(30, generator=g) * 1.0,          # behind the camera
                           0.5 + torch.rand(120, generator=g) * 3.0])   # in front
        lateral = torch.randn(n, 3, generator=g) * 0.6
        lateral = lateral - (lateral @ forward)[:, None] * forward
        means = centre + depth[:, None] * forward + lateral
        log_s = torch.randn(n, 3, generator=g) * 0.4 - 3.0
        log_s[:40, 0] -= 3.0                 # needles
        log_s[40:55] += 2.0                  # bigger than the image
        groups.append((means, log_s.exp()))
    opac = torch.rand(B, n, generator=g)
    opac[:, :20] = 0.004                     # below 1/255 after falloff
    opac[:, 20:40] = 0.995
    return dict(
        means=torch.stack([m for m, _ in groups]), quats=_random_quats(g, B * n).view(B, n, 4),
        scales=torch.stack([s for _, s in groups]), opacities=opac,
        colors=torch.rand(B, n, 3, generator=g), viewmats=viewmats, Ks=Ks, backgrounds=torch.zeros(B, 3))


def run_gsplat(inputs: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, np.ndarray]:
    """Forward + backward through ``gsplat.rasterization`` on CUDA; everything back as float32 numpy."""
    import gsplat

    B = inputs["means"].shape[0]
    v_colors = torch.randn(B, HEIGHT, WIDTH, 3, generator=g)
    v_alphas = torch.randn(B, HEIGHT, WIDTH, 1, generator=g)
    dev = {k: v.cuda().requires_grad_(k in ("means", "quats", "scales", "opacities", "colors"))
           for k, v in inputs.items()}
    colors, alphas, info = gsplat.rasterization(
        dev["means"], dev["quats"], dev["scales"], dev["opacities"], dev["colors"],
        dev["viewmats"][:, None], dev["Ks"][:, None], WIDTH, HEIGHT, near_plane=0.01, far_plane=1e10,
        eps2d=0.3, packed=False, backgrounds=dev["backgrounds"][:, None])
    info["means2d"].retain_grad()
    loss = (colors[:, 0] * v_colors.cuda()).sum() + (alphas[:, 0] * v_alphas.cuda()).sum()
    loss.backward()
    out = {k: v for k, v in inputs.items()}
    out.update(v_colors=v_colors, v_alphas=v_alphas,
               out_colors=colors[:, 0].detach(), out_alphas=alphas[:, 0].detach(),
               radii=info["radii"][:, 0].detach(), means2d=info["means2d"][:, 0].detach(),
               depths=info["depths"][:, 0].detach(), grad_means2d=info["means2d"].grad[:, 0])
    for k in ("means", "quats", "scales", "opacities", "colors"):
        out[f"grad_{k}"] = dev[k].grad
    return {k: v.detach().cpu().numpy().astype(np.int32 if k == "radii" else np.float32) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "gsplat_parity.npz")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("make_gsplat_fixture: needs a CUDA device (gsplat records the reference)", file=sys.stderr)
        return 2
    import gsplat

    t0 = time.perf_counter()
    gsplat.rasterization  # noqa: B018 - the attribute exists before the extension builds
    g = torch.Generator().manual_seed(20261122)
    arrays: dict[str, np.ndarray] = {}
    for name, make in (("scene", make_scene_case), ("edge", make_edge_case)):
        for key, value in run_gsplat(make(g), g).items():
            arrays[f"{name}/{key}"] = value
    meta = {"gsplat": gsplat.__version__, "torch": torch.__version__, "device": torch.cuda.get_device_name(),
            "width": WIDTH, "height": HEIGHT, "eps2d": 0.3, "near_plane": 0.01}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(json.dumps({**meta, "out": str(args.out), "bytes": args.out.stat().st_size,
                      "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
