"""Export stage: per-frame Inria 3DGS PLY files plus ``manifest.json``, and the model itself.

The manifest records the model's ``image_formation``; ``frames/`` hold the fitted Gaussians
unchanged in either. With a ``standard_model`` (the same Gaussians with colours and opacities
refitted for the standard 3DGS formation,
:func:`backend.pipeline.reconstruct.refit_formation.refit_for_formation`) its frames go to
``frames_3dgs/`` for other 3DGS tools (``standard_frame_files``; see
:mod:`protocol.formats.manifest` for why a ``"blender"`` asset needs them).

The result folder is the one :mod:`protocol.formats.manifest` describes (what the add-on's
importer and ``backend render`` read): ``manifest.json``, ``frames/frame_0000.ply`` … (one
file per output frame, N Gaussians in the same order) and ``model.pt`` (the 4D model,
which evaluates at any t).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from backend.gaussians.ply import write_gaussians_ply
from backend.gaussians.model_io import load_gaussians4d
from backend.gaussians.model import Gaussians4D
from backend.pipeline.context import JobContext
from protocol.formats.image_formation import STANDARD_3DGS
from protocol.formats.manifest import MODEL_FILE, Manifest, frame_file_name, standard_frame_file_name, write_manifest
from protocol.formats.time_grid import frame_times


def output_times(frame_count: int) -> torch.Tensor:
    """Normalized times of ``frame_count`` output frames as a float32 ``[T]`` tensor: the
    time grid of :func:`protocol.formats.time_grid.frame_times` (frame i at ``i / (T − 1)``).

    Raises:
        ValueError: ``frame_count < 1``.
        TypeError: a non-integer count.
    """
    return torch.tensor(frame_times(frame_count), dtype=torch.float32)


def export_result(model: Gaussians4D, out_dir: Path, frame_count: int, fps: float, spec: dict,
                  ctx: JobContext, stats: dict | None = None, standard_model: Gaussians4D | None = None) -> dict:
    """Write the per-frame PLYs, the model and the manifest.

    Args:
        model: the fitted 4D Gaussians.
        out_dir: result folder (created).
        frame_count: output frames T, evaluated at :func:`output_times` (any T, not only
            the input frame count: the model is continuous in time).
        fps: playback rate recorded in the manifest.
        spec: the job spec, recorded in the manifest.
        stats: optional optimization statistics recorded in the manifest.
        standard_model: ``model`` refitted for ``"3dgs"`` (same Gaussian count), whose
            frames are written to ``frames_3dgs/`` (``standard_frame_files``); None = none.

    Returns:
        The manifest as written (:meth:`protocol.formats.manifest.Manifest.to_dict`).

    Raises:
        JobCancelled: between frames.
        protocol.formats.ManifestError: an inconsistent manifest (e.g. ``fps`` ≤ 0), before
            anything is written.
        ValueError: a ``standard_model`` not fitted for ``"3dgs"`` or with another Gaussian count.
    """
    out_dir = Path(out_dir)
    if standard_model is not None and (standard_model.image_formation != STANDARD_3DGS
                                       or standard_model.num_gaussians != model.num_gaussians):
        raise ValueError(f"standard_model must be a {STANDARD_3DGS!r} model of {model.num_gaussians} Gaussians, got "
                         f"{standard_model.image_formation!r} with {standard_model.num_gaussians}")
    times = output_times(frame_count)
    manifest = Manifest(frame_count=frame_count, fps=float(fps), times=times.tolist(),
                        sh_degree=model.config.sh_degree, gaussian_count=model.num_gaussians,
                        frame_files=[frame_file_name(i) for i in range(frame_count)], model_file=MODEL_FILE,
                        image_formation=model.image_formation,
                        standard_frame_files=None if standard_model is None else
                        [standard_frame_file_name(i) for i in range(frame_count)],
                        spec=spec, stats={k: v for k, v in (stats or {}).items() if k != "loss_curve"})
    exports = [(model, manifest.frame_files)]
    if standard_model is not None:
        exports.append((standard_model, manifest.standard_frame_files))
    total = frame_count * len(exports)
    for k, (source, names) in enumerate(exports):
        (out_dir / names[0]).parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            for i, (t, name) in enumerate(zip(manifest.times, names)):
                ctx.check_cancelled()
                g = source.at(torch.tensor([t], device=source.params["means"].device))
                write_gaussians_ply(out_dir / name, g.means[0].cpu().numpy(),
                                    torch.nn.functional.normalize(g.quats[0], dim=-1).cpu().numpy(),
                                    g.log_scales[0].cpu().numpy(), g.opacity_logits[0].cpu().numpy(),
                                    g.sh[0].cpu().numpy())
                ctx.progress("export", k * frame_count + i + 1, total)
    torch.save(model.state(), out_dir / MODEL_FILE)
    write_manifest(out_dir, manifest)
    if stats and "loss_curve" in stats:
        (out_dir / "loss_curve.json").write_text(json.dumps(stats["loss_curve"]))
    return manifest.to_dict()


def load_model(result_dir: Path):
    """Load the 4D model saved in a result folder (trajectory or HexPlane).

    Raises:
        FileNotFoundError: when the folder has no ``model.pt``.
    """
    path = Path(result_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a gen4d result folder")
    return load_gaussians4d(torch.load(path, map_location="cpu", weights_only=True))
