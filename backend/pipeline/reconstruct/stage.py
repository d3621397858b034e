"""The reconstruct stage: fit 4D Gaussians to calibrated, timed multi-view footage.

Loss: ``0.8·L1 + 0.2·(1 − SSIM)`` on images composited over a random background colour,
plus an L1 alpha/mask loss (docs/design.md "Common image loss") and the optional terms of
:mod:`backend.optim.loss_terms`. Densification: gsplat's ``DefaultStrategy`` (3DGS) or
STAG4D's. Initialization: space carving of the footage's masks, coloured from the images
(:mod:`.initialize`). One training step (:class:`.train.Trainer`) renders a batch of
random (time, camera) frames.
"""

from __future__ import annotations

import logging
import time

import torch

from backend.compute_threads import govern_threads
from backend.errors import JobCancelled, JobError
from backend.gaussians.model import Gaussians4D
from backend.gaussians.model_io import load_gaussians4d
from backend.optim.optimizer import ModelOptimizer
from backend.optim.sds_term import SDSTerm
from backend.pipeline.context import JobContext
from backend.pipeline.ingest import Footage
from backend.pipeline.reconstruct.checkpoint import FitCheckpoint, capture_fit, fit_fingerprint, restore_fit
from backend.pipeline.reconstruct.confidence import footage_confidence
from backend.pipeline.reconstruct.initialize import init_model, scene_bounds
from backend.pipeline.reconstruct.schedule import FitSchedule
from backend.pipeline.reconstruct.train import Trainer, make_densifier, make_loss_terms
from backend.pipeline.reconstruct.training_data import TrainingData
from backend.render.frames import preview_png
from protocol.config import ReconstructConfig

log = logging.getLogger("gen4d.reconstruct")


def reconstruct(footage: Footage, cfg: ReconstructConfig, ctx: JobContext, device: str = "cpu",
                stage: str = "reconstruct", guidance=None) -> tuple[Gaussians4D, dict]:
    """Fit a 4D Gaussian model of ``cfg.model.representation``: trajectories, static
    Gaussians, or a HexPlane deformation field after a static coarse phase.

    Per-job mechanisms: densification (gsplat 3DGS or STAG4D adaptive), the Efficient4D
    confidence-weighted photometric loss, a kNN local-rigidity regularizer, the STAG4D
    scale-ratio cap and SDS, and the model's own regularizers (HexPlane planes).

    Args:
        footage: training footage, already resized to the working resolution.
        cfg: the reconstruct settings (:func:`protocol.presets.reconstruct_config`).
        ctx: progress/preview/cancel channel; progress is reported every step (rate-limited
            by the context) with the current loss, previews every ``output.preview_every_s``.
        device: ``"cpu"`` or ``"cuda"``.
        stage: the stage name progress is reported under.
        guidance: the SDS guidance model (:class:`Zero123Guidance`), required when
            ``losses.sds_weight > 0`` (:class:`backend.optim.sds_term.SDSTerm`).

    Returns:
        ``(model, stats)``; stats holds ``iterations`` (steps run: fewer than
        ``planned_iterations`` when ``optimization.time_limit_s`` stopped the fit or
        ``optimization.time_budget_s`` was spent first, :mod:`.schedule`), ``seconds``, ``it_per_s``,
        ``n_gaussians``, ``final_loss`` (the loss EMA, factor 0.9), ``loss_curve`` (list of
        [step, EMA] every 10 steps and at the last) and ``sds_steps``; with a checkpoint
        folder also ``resumed_from_step`` (the step a checkpoint resumed the fit at, or None),
        ``checkpoints`` (written by this run, the final one included), ``checkpoint_seconds``
        (their total write time, the final one excluded) and ``checkpoint_bytes`` (size of the
        last periodic one; 0 if none).

    Checkpoints (:mod:`.checkpoint`): with ``ctx.checkpoint_dir`` set, the fit saves its state
    every ``optimization.checkpoint_every_s`` seconds, when cancelled between steps, and when
    it ends, to ``<checkpoint_dir>/<stage>.pt``; a matching checkpoint found there at the
    start resumes the fit from it (a ``finished`` one returns its model and stats at once),
    continuing the same random draws: the resumed fit equals the uninterrupted one. The
    time budget and limit count the seconds spent before the checkpoint (not the re-run
    of the stages before the fit nor the steps lost after the checkpoint).

    Raises:
        JobCancelled: when cancelled between steps.
        BadInputError: no initial point survives carving.
        JobError: ``out_of_memory`` when the device runs out of memory; ``invalid_option``
            for ``sds_weight > 0`` without a guidance model, or confidence weighting of
            footage that is not synchronized multi-view video.
    """
    opt, iterations = cfg.optimization, cfg.optimization.iterations
    entered = time.monotonic()
    if cfg.losses.sds_weight > 0 and guidance is None:
        raise JobError("invalid_option", "sds_weight > 0 needs the sds_guidance model (python -m backend models "
                                         "list)")
    gen = torch.Generator().manual_seed(opt.seed)
    torch.manual_seed(opt.seed)
    checkpoint, saved = None, None
    if ctx.checkpoint_dir is not None:
        checkpoint = FitCheckpoint(ctx.checkpoint_dir, stage, opt.checkpoint_every_s,
                                   fit_fingerprint(footage, cfg, stage))
        saved = checkpoint.load()
    if saved is not None:
        ctx.progress(stage, min(int(saved["loop"]["step"]), iterations), iterations, message="loading the checkpoint")
        model = load_gaussians4d(saved["model"]).to(device)
    else:
        ctx.progress(stage, 0, iterations, message="initializing Gaussians")
        model = init_model(footage, cfg.model, gen, check_cancelled=ctx.check_cancelled).to(device)
    centre, radius = scene_bounds(footage)
    optimizer = ModelOptimizer(model, opt, radius)
    sds = None
    if cfg.losses.sds_weight > 0:
        sds = SDSTerm(footage, guidance.to(device), centre, iterations, seed=opt.seed)
    confidence = None
    if cfg.losses.confidence_weighting:
        ctx.progress(stage, 0, iterations, message="confidence maps (optical flow)")
        confidence = footage_confidence(footage, ctx.check_cancelled).to(device)
    data = TrainingData(footage, cfg.data, iterations, device, confidence)
    trainer = Trainer(model, data, make_loss_terms(cfg, gen, sds), optimizer,
                      make_densifier(cfg.densification, iterations, radius), gen, iterations, opt.batch_size,
                      cfg.densification.max_scale_ratio)
    curve, ema = [], None
    step, step_seconds, limited, fit_seconds, resumed_from = 0, 0.0, False, 0.0, None
    if saved is not None:
        loop = restore_fit(saved, trainer, sds, device)
        if loop.get("finished"):
            ctx.progress(stage, iterations, iterations, loss=loop["stats"].get("final_loss"),
                         message="fit already finished before the restart (from its checkpoint)")
            return model, loop["stats"]
        step, ema, curve = int(loop["step"]), loop["ema"], [list(c) for c in loop["curve"]]
        step_seconds, fit_seconds, resumed_from = float(loop["step_seconds"]), float(loop["fit_seconds"]), step
        entered = time.monotonic() - float(loop["elapsed_s"])  # budget and limit count the time already spent
        log.info("%s: resumed from the checkpoint at step %d (%.1f s already spent)", stage, step, loop["elapsed_s"])
        ctx.progress(stage, step, iterations, loss=ema, message=f"resumed from the checkpoint at step {step}")
    start = time.monotonic() - fit_seconds
    last_preview = time.monotonic()
    schedule = FitSchedule(iterations, opt.time_budget_s, started=entered)  # the budget counts initialization too

    def save(finished: bool = False, stats: dict | None = None) -> None:
        now = time.monotonic()
        try:
            checkpoint.save(capture_fit(trainer, sds, {
                "step": step, "ema": ema, "curve": curve, "step_seconds": step_seconds, "fit_seconds": now - start,
                "elapsed_s": now - entered, "finished": finished, "stats": stats}))
        except OSError as e:  # a full disk costs the job its resumability, not its result
            checkpoint.last_save = checkpoint.clock()
            log.warning("%s: could not write the checkpoint at step %d (%s); the fit goes on", stage, step, e)

    while True:
        try:
            ctx.check_cancelled()
        except JobCancelled:
            if checkpoint is not None and step > 0:
                save()  # the worker keeps it on a shutdown, deletes it on a user's cancel
            raise
        progress = schedule.progress(step)
        if schedule.finished(step, progress):
            break
        if step and opt.time_limit_s and time.monotonic() - entered + step_seconds > opt.time_limit_s:
            limited = True  # the next step would end past the limit (the first step always runs)
            break
        govern_threads(step, device)  # yield cores to other work on a shared CPU (docs/design.md "Rendering")
        t_step = time.monotonic()
        value = trainer.step(step, progress if schedule.by_time else None)
        step_seconds = time.monotonic() - t_step
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        if step % 10 == 0 or step == iterations - 1:
            curve.append([step, ema])
        step += 1
        shown = step if not schedule.by_time else max(step, round(schedule.progress(step) * iterations))
        ctx.progress(stage, min(shown, iterations), iterations, loss=ema)
        now = time.monotonic()
        if now - last_preview >= cfg.output.preview_every_s:
            last_preview = now
            ctx.preview(preview_png(model, footage))
        if checkpoint is not None and checkpoint.due():
            save()
    seconds = time.monotonic() - start
    done = step
    if curve and curve[-1][0] != done - 1:
        curve.append([done - 1, ema])
    if limited:
        ctx.progress(stage, done, done, loss=ema,
                     message=f"time limit {opt.time_limit_s:g} s reached after {done} of {iterations} steps")
    elif done < iterations:
        ctx.progress(stage, iterations, iterations, loss=ema,
                     message=f"time budget {opt.time_budget_s:g} s spent: {done} of {iterations} steps")
    stats = {"iterations": done, "planned_iterations": iterations, "seconds": seconds,
             "it_per_s": done / max(seconds, 1e-9),
             "n_gaussians": model.num_gaussians, "final_loss": ema, "loss_curve": curve,
             "sds_steps": 0 if sds is None else sds.calls}
    if checkpoint is not None:
        stats.update(resumed_from_step=resumed_from, checkpoints=checkpoint.saves + 1, checkpoint_seconds=checkpoint.save_seconds,
                     checkpoint_bytes=checkpoint.last_bytes)
        save(finished=True, stats=stats)  # a crash in a later stage does not redo the fit
    return model, stats
