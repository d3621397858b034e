"""Refit a fitted model's colours and opacities for another image formation.

Why: an asset fitted for Blender (``"blender"``: colours blended in linear light, Cycles'
pixel filter, :mod:`protocol.formats.image_formation`) looks darker and softer in a standard
3DGS viewer, which blends the same colours as sRGB values over a 0.3 px² dilation: issue 15
measured the demo's fit at 30.33 dB on its held-out views under its own formation and 24.57
under ``"3dgs"``. No per-Gaussian formula converts one into the other (the difference
depends on how the splats overlap), so the export for other 3DGS tools is a short refit of a
copy of the model on the training footage under the target formation: every per-Gaussian
parameter is optimized (position-like ones at the fit's final, decayed rate), any
deformation field (HexPlane planes and MLP) stays frozen.

Measured on the demo's fit (1500 steps; its 32 held-out views rendered under ``"3dgs"``,
full / object dB; ``benchmarks/standard_export.py``): as fitted 24.57 / 19.80. Refit for
600 steps, colours and opacities only: 27.87 / 23.04; plus scales 28.40 / 23.56; plus
rotations 28.52 / 23.67; every per-Gaussian key 29.46 / 24.59. Every key for 150 steps:
28.83 / 23.97; for 300 steps (``output.standard_ply_refit`` 0.2, the default): 29.25 /
24.38, level with a fit made for ``"3dgs"`` from the start (29.20 / 24.33).

Loss and batches are the reconstruct stage's (``0.8·L1 + 0.2·(1 − SSIM)`` over a random
background plus the alpha loss, :mod:`backend.optim.loss_terms`), at full resolution, Adam at
the fit's own rates for those keys (:meth:`Gaussians4D.learning_rates`), without
densification, so every Gaussian keeps its index: frame ``i`` of the refit export has the
same Gaussians, in the same order, at the same places as frame ``i`` of the Blender export.

This is gen4d's own step; none of the three papers exports for two renderers.
"""

from __future__ import annotations

import copy
import time

import torch

from backend.gaussians.model import Gaussians4D
from backend.gaussians.model_io import load_gaussians4d
from backend.optim.loss_terms import AlphaLoss, ImageLoss, RenderedBatch, total_loss
from backend.pipeline.context import JobContext
from backend.pipeline.ingest import Footage
from backend.pipeline.reconstruct.initialize import scene_bounds
from backend.pipeline.reconstruct.training_data import TrainingData
from backend.render.image_formation import check_image_formation
from backend.render.rasterize import rasterize
from protocol.config import DataConfig, ReconstructConfig



def copy_model(model: Gaussians4D) -> Gaussians4D:
    """A copy of ``model`` sharing no tensor with it, on its device (through
    :meth:`Gaussians4D.state` and :func:`~backend.gaussians.model_io.load_gaussians4d`, the
    round trip ``model.pt`` makes)."""
    device = model.params["means"].device
    return load_gaussians4d(copy.deepcopy(model.state())).to(device)


def refit_for_formation(model: Gaussians4D, footage: Footage, cfg: ReconstructConfig, target: str, steps: int,
                        ctx: JobContext, device: str = "cpu", stage: str = "export_3dgs",
                        keys: tuple[str, ...] | None = None) -> tuple[Gaussians4D, dict]:
    """A copy of ``model`` whose colours and opacities are refitted for ``target``.

    Args:
        model: the fitted model (left unchanged).
        footage: the training footage the model was fitted on (working resolution).
        cfg: the fit's settings (learning rates, batch size, seed, alpha weight).
        target: the image formation to refit for (``"3dgs"`` for standard viewers).
        steps: optimization steps (≥ 1); each renders ``cfg.optimization.batch_size`` frames.
        ctx: progress (under ``stage``) and cancellation.
        device: the training device.
        stage: the stage name progress is reported under.
        keys: the per-Gaussian keys optimized (those the model has; None = all of them);
            position-like keys (:attr:`Gaussians4D.POSITION_PARAMS`) at the fit's final,
            decayed rate.

    Returns:
        ``(refitted copy, stats)``, stats: ``steps``, ``seconds``, ``loss_first`` and
        ``loss_last`` (EMA, factor 0.9) of the refit.

    Raises:
        JobError: ``invalid_option`` for an unknown ``target``.
        ValueError: ``steps < 1``.
        JobCancelled: when cancelled between steps.
    """
    check_image_formation(target)
    if steps < 1:
        raise ValueError(f"refit steps must be ≥ 1, got {steps}")
    start = time.monotonic()
    refit = copy_model(model)
    refit.image_formation = target
    for p in refit.parameters():
        p.requires_grad_(False)
    _, radius = scene_bounds(footage)
    lrs = refit.learning_rates(cfg.optimization, radius)
    keys = [k for k in (refit.params if keys is None else keys) if k in refit.params]
    lrs = {k: lr * (cfg.optimization.lr_final_factor if k in refit.POSITION_PARAMS else 1.0) for k, lr in lrs.items()}
    for k in keys:
        refit.params[k].requires_grad_(True)
    adam = torch.optim.Adam([{"params": [refit.params[k]], "lr": lrs[k]} for k in keys], eps=1e-15)
    data = TrainingData(footage, DataConfig(low_res_factor=1), steps, device)
    terms = [ImageLoss(), AlphaLoss(weight=cfg.losses.alpha_weight)]
    gen = torch.Generator().manual_seed(cfg.optimization.seed + 1)
    batch_size = cfg.optimization.batch_size
    ema = first = None
    for step in range(steps):
        ctx.check_cancelled()
        idx = torch.randint(0, data.n_frames, (batch_size,), generator=gen).to(device)
        bg = torch.rand(batch_size, 3, generator=gen).to(device)
        batch = data.batch(step, idx, bg)
        g = refit.at(batch.times)
        colors, alphas, info = rasterize(**g.rasterization_inputs(batch.viewmats), viewmats=batch.viewmats,
                                         Ks=batch.Ks, width=batch.width, height=batch.height, backgrounds=bg,
                                         image_formation=target)
        loss = total_loss(terms, refit, batch, RenderedBatch(g, colors, alphas, info))
        loss.backward()
        adam.step()
        adam.zero_grad(set_to_none=True)
        value = float(loss.detach())
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        first = ema if first is None else first
        ctx.progress(stage, step + 1, steps, loss=ema, message=f"refitting colours for {target}")
    for p in refit.parameters():
        p.requires_grad_(False)
    return refit, {"steps": steps, "seconds": time.monotonic() - start, "loss_first": first, "loss_last": ema}
